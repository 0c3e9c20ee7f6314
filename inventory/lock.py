"""One writer at a time per database: overlapping cron runs wait a bounded time, then give up.

A ``flock`` on ``<database>.lock`` (owner-only, holding the writer's pid; beside the file a symlink points to) is
held for a whole scan — collection and write — and for check, import, prune and upgrade. The kernel drops it when
the process dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inventory.errors import InventoryError, StoreError

DEFAULT_LOCK_TIMEOUT = 60.0


class DatabaseBusy(InventoryError):
    """Another cs-inventory holds the database's writer lock; exit code 5."""

    exit_code = 5


@contextmanager
def writer_lock(db_path: Path, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    try:
        real = db_path.resolve()  # a symlink to the database shares its lock: SQLite writes the file it points to
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise StoreError(f"database {db_path}: cannot follow its path ({exc})",
                         hint="point [database] path or --db at the file itself") from exc
    lock_path = real.with_name(real.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"database {db_path}: cannot create {lock_path} beside it ({exc.strerror})",
                         hint="give a database path in a folder you may write to") from exc
    try:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise DatabaseBusy(
                        f"{db_path} is being written by another cs-inventory (pid {holder}); "
                        f"waited {timeout:g}s",
                        hint="let it finish, or raise --lock-timeout; cron runs should not overlap") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
