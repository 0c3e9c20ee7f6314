"""Where a command's output goes: standard output, or a file replaced atomically."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import inventory
from cli.literal import printable

__all__ = ["TerminalSafe", "output"]

_LINE_END = re.compile(r"(\r\n|\n)")


class TerminalSafe:
    """What an export writes to a terminal, with control and format characters shown as escapes (as ls does):
    a name must not drive the operator's terminal. Piped or written to a file, the data goes out as it is."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        # the line ends (CSV's CRLF, JSON's LF) stay line ends; a CR anywhere else is shown as \x0d
        return int(self.stream.write("".join(part if part in ("\r\n", "\n") else printable(part)
                                             for part in _LINE_END.split(text))))

    def flush(self) -> None:
        self.stream.flush()


@contextmanager
def output(path: Path | None, *, database: Path, binary: bool = False,
           mode: int = 0o600) -> Iterator[Any]:
    """stdout, or a file created owner-only (exports hold the estate's layout) and replaced atomically.

    The content goes to a temporary file beside the destination, renamed over it when complete: a reader
    (node_exporter, a mail job) sees the old file or the new one, never half of one, and a failed export
    leaves the old file as it was. A destination that is not a regular file (a FIFO, /dev/stderr, /dev/fd/N) is
    written in place, appended to; /dev/stdout is standard output. The ``database`` the output is made from (or
    a file SQLite keeps beside it) is refused.
    """
    if path is not None and str(path) in STANDARD_OUTPUT:  # not the file it leads to (`>> app.csv`): replacing
        path = None                                           # that would lose what the shell appended to
    if path is None:
        with _written("standard output", "some of it may have been written"):
            if binary:
                yield sys.stdout.buffer
            else:
                yield TerminalSafe(sys.stdout) if sys.stdout.isatty() else sys.stdout
            sys.stdout.flush()  # an error is said now, not lost at exit
        return
    target = Path(os.path.realpath(path))
    if target.is_dir():  # `-o ""` is the current folder
        raise inventory.ConfigError(f"--output {path} is a folder, not a file", hint="give a file name, e.g. "
                                    f"{Path(path, 'export.csv')}")
    _not_the_database(path, target, database)
    how: str = "wb" if binary else "w"
    newline = None if binary else ""  # CSV writes its own line ends
    if str(path).startswith(DEVICES):  # /dev/stderr, /dev/fd/3, /proc/self/fd/N: a stream, appended to as it is
        with _written(str(path), "some of it may have been written"), open(path, how.replace("w", "a"),
                                                                           newline=newline) as handle:
            yield handle
        return
    if target.exists() and not target.is_file():
        with _written(str(path), "some of it may have been written"), open(target, how, newline=newline) as handle:
            yield handle
        return
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise inventory.ConfigError(f"--output {path}: cannot write beside it in {target.parent} ({exc.strerror})",
                                    hint="give a file in an existing folder you may write to") from None
    kept = "the old file is as it was" if target.exists() else "nothing was written"
    try:
        with _written(str(path), kept), _removed_when_terminated(path, Path(temporary), kept):
            os.fchmod(fd, mode)
            with os.fdopen(fd, how, newline=newline) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


STANDARD_OUTPUT = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")  # "-": as most tools read it
DEVICES = ("/dev/", "/proc/")  # streams and devices the shell or the kernel names: written in place, never replaced
DATABASE_COMPANIONS = ("-wal", "-shm", "-journal", ".lock")  # SQLite's files beside the database, and our lock


def _not_the_database(path: Path, target: Path, database: Path) -> None:
    """Writing the export over the database (or its WAL, shared memory, journal or lock) would lose every scan."""
    real = Path(os.path.realpath(database))
    for suffix in ("", *DATABASE_COMPANIONS):
        companion = real.with_name(real.name + suffix)
        if target == companion or _same_file(target, companion):
            what = f"the database {database}" if not suffix else f"the database's {suffix} file ({database}{suffix})"
            raise inventory.ConfigError(f"--output {path} is {what}: writing it would lose the stored scans",
                                        hint="give --output another file")


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:  # either does not exist
        return False


@contextmanager
def _written(what: str, done: str) -> Iterator[None]:
    """Writes to ``what``: a full disk, a file-size limit or an I/O error is a one-line error that says what became
    of the output (``done``), as ``store.writing`` does for the database; a reader that went away is not one."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise inventory.OutputError(f"cannot write {what}: {exc.strerror or exc}; {done}",
                                    hint="is the disk full, or a file-size limit set? free some space and run again"
                                    ) from None


@contextmanager
def _removed_when_terminated(path: Path, temporary: Path, kept: str) -> Iterator[None]:
    """SIGTERM (cron's, systemd's stop) while the output is written removes the temporary file, says so, and ends
    the process as SIGTERM ends it. Ctrl-C needs nothing: Python raises KeyboardInterrupt and ``output`` cleans up.
    (scan turns SIGTERM into an exception instead, ``inventory.scan``: it has a scan to store; here, raised in
    SQLite's progress handler during a slow --where, an exception would be taken for the query's own error.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, _frame: FrameType | None) -> None:
        temporary.unlink(missing_ok=True)
        sys.stderr.write(f"error: terminated by {signal.Signals(signum).name}: {printable(str(path))} was not written; "
                         f"{kept}\n")
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
