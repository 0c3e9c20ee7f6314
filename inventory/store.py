"""The inventory store: one SQLite file, every scan kept under its own scan_id.

A scan is written in one transaction (``write_scan``), so a reader — or a crash — sees a
whole scan or none of it. Two ways to open it: ``open_store`` for the commands that write
(creates, migrates), ``open_store_readonly`` for those that only read (never writes a byte).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from sqlite_utils import Database

from inventory import schema
from inventory.errors import StoreError
from inventory.lock import DEFAULT_LOCK_TIMEOUT, writer_lock
from inventory.model import TargetResult
from inventory.normalise import storable

BUSY_TIMEOUT_MS = 30_000
WHERE_TIME_LIMIT_S = 30.0            # how long a user's --where may run
WHERE_VALUE_BYTES = 16 * 2**20       # the largest text or blob a --where may make (SQLite's length limit)
_ROWS_PER_INSERT = 100
encode_json = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode  # raw_json and detail columns


def _text(text: str | None) -> str | None:
    return None if text is None else storable(text)


class SameStatement(NamedTuple):
    """The ``finding_objects`` rows of one finding about many objects (``findings.object_count`` > 1), which differ
    only in the object: its key, name and observed value; each one's message is its name, then ``said``."""

    finding: int
    target: str
    cluster: str | None
    rule_id: str
    severity: str
    object_type: str
    expected: str | None
    said: str
    objects: Sequence[tuple[str, str, str | None]]  # object_key, object_name, observed


_ROWS_PER_SAME = 300
_SAME_INSERT = ("INSERT INTO finding_objects (scan_id, finding, target, cluster, rule_id, severity, object_type, "
                "object_key, object_name, message, observed, expected) SELECT ?, ?, ?, ?, ?, ?, ?, column1, column2, "
                "column2 || ?, column3, ? FROM (VALUES ")


@dataclass(frozen=True, slots=True)
class ScanRow:
    started_at: str
    finished_at: str
    status: str
    error: str | None
    cloudstack_version: str | None
    tool_version: str
    config_path: str | None


class Store:
    def __init__(self, db: Database, path: Path, *, writable: bool) -> None:
        self.db = db
        self.path = path
        self.writable = writable

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------
    def require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path} was opened read-only", hint="this command needs open_store (a writer)")

    def write_scan(self, scan: ScanRow, results: Sequence[TargetResult]) -> int:
        """Write a scan, its targets, endpoints and records in one transaction; return its id."""
        self.require_writable()
        with writing(self.path), self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO scans (started_at, finished_at, status, error, cloudstack_version, "
                "tool_version, config_path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [scan.started_at, scan.finished_at, scan.status, _text(scan.error), _text(scan.cloudstack_version),
                 scan.tool_version, _text(scan.config_path)])  # a path's byte that is not UTF-8: U+FFFD
            scan_id = int(cursor.lastrowid or 0)
            # what an endpoint said (errors, its detail) is not bounded as records are: only made storable
            self._insert("targets", [(scan_id, storable(r.name), storable(r.hypervisor), storable(r.endpoint),
                                      storable(r.status), _text(r.error), round(r.duration_s, 3), r.api_calls,
                                      None if r.detail is None else storable(encode_json(r.detail))) for r in results])
            self._insert("endpoints", [(scan_id, storable(e.target), storable(e.endpoint), storable(e.status),
                                        _text(e.error), round(e.duration_s, 3), e.api_calls)
                                       for r in results for e in r.endpoints])
            for table_name in schema.INVENTORY_TABLES:
                for result in results:
                    self._insert_records(table_name, scan_id, getattr(result.inventory, table_name),
                                         result.inventory.raw_texts)
        return scan_id

    def _insert_records(self, table_name: str, scan_id: int, records: Sequence[Any],
                        raw_texts: Mapping[int, tuple[Any, str]]) -> None:
        """``raw_texts``: the JSON text of a raw_json already encoded (``Inventory.raw_texts``), by its id."""
        if not records:
            return
        table = schema.TABLES_BY_NAME[table_name]
        fields = table.column_names[1:]  # every column but scan_id comes from the record
        get = attrgetter(*fields)
        raw_index = fields.index("raw_json") if "raw_json" in fields else None
        if raw_index is None:
            rows = [(scan_id, *get(rec)) for rec in records]
        else:
            rows = []
            for rec in records:
                values = list(get(rec))
                raw = values[raw_index]
                if raw is not None:
                    known = raw_texts.get(id(raw))
                    values[raw_index] = known[1] if known is not None and known[0] is raw else encode_json(raw)
                rows.append((scan_id, *values))
        self._insert(table_name, rows)

    def _insert(self, table_name: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows as multi-row INSERTs of ``_ROWS_PER_INSERT``: a third faster than executemany."""
        if not rows:
            return
        columns = schema.TABLES_BY_NAME[table_name].column_names
        head = f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES "
        one = f"({', '.join('?' * len(columns))})"
        full = head + ", ".join([one] * _ROWS_PER_INSERT)
        execute = self.db.conn.execute
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start:start + _ROWS_PER_INSERT]
            sql = full if len(chunk) == _ROWS_PER_INSERT else head + ", ".join([one] * len(chunk))
            execute(sql, list(chain.from_iterable(chunk)))

    def write_findings(self, scan_id: int, findings: Sequence[tuple[Any, ...]],
                       objects: Sequence[tuple[Any, ...] | SameStatement], release: str | None = None) -> None:
        """Replace the findings of one scan (checks can be re-run): ``findings`` rows, and ``finding_objects`` rows
        in order, each with every column or many at once as a ``SameStatement`` (``inventory.checks`` makes them);
        ``release``: the one they were checked against, then the scan's ``cloudstack_version``."""
        self.require_writable()
        with writing(self.path, "the findings were not stored (a scan written before them stays)"), self.db.atomic():
            if release is not None:
                self.db.execute("UPDATE scans SET cloudstack_version = ? WHERE id = ?", [release, scan_id])
            self.db.execute("DELETE FROM findings WHERE scan_id = ?", [scan_id])
            self.db.execute("DELETE FROM finding_objects WHERE scan_id = ?", [scan_id])
            self._insert("findings", findings)
            rows: list[tuple[Any, ...]] = []
            for part in objects:
                if type(part) is SameStatement:
                    self._insert("finding_objects", rows)
                    rows = []
                    self._insert_same(scan_id, part)
                else:
                    rows.append(part)
            self._insert("finding_objects", rows)

    def _insert_same(self, scan_id: int, same: SameStatement) -> None:
        """``finding_objects`` rows that differ only in their object: the columns they share are sent once per
        statement of ``_ROWS_PER_SAME`` objects, and each message is made by SQLite (the name, then what is said)."""
        shared = [scan_id, same.finding, same.target, same.cluster, same.rule_id, same.severity, same.object_type,
                  same.said, same.expected]
        execute = self.db.conn.execute
        for start in range(0, len(same.objects), _ROWS_PER_SAME):
            chunk = same.objects[start:start + _ROWS_PER_SAME]
            execute(_SAME_INSERT + ", ".join(["(?, ?, ?)"] * len(chunk)) + ")",
                    [*shared, *chain.from_iterable(chunk)])

    def finding_objects(self, scan_id: int, where: str = "", params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A scan's findings one per object, as the rules made them (``findings`` rows as they were before findings
        were grouped, and the object's name): each ``finding_objects`` row with its finding's remediation,
        reference and basis. ``where`` is a condition on ``o.`` (finding_objects) and ``f.`` (findings) columns."""
        return self.query(
            "SELECT o.scan_id, o.target, o.cluster, o.rule_id, o.severity, o.object_type, o.object_key, o.message, "
            "o.observed, o.expected, f.remediation, f.reference, f.basis, o.object_name "
            "FROM finding_objects o JOIN findings f ON f.scan_id = o.scan_id AND f.number = o.finding "
            f"WHERE o.scan_id = ? {'AND ' + where if where else ''} ORDER BY o.rowid", [scan_id, *params])

    # -- reading -----------------------------------------------------------------------------
    def latest_scan_id(self) -> int | None:
        row = self.db.execute(
            "SELECT id FROM scans WHERE status IN ('ok', 'partial') ORDER BY id DESC LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def resolve_scan(self, scan_id: int | None) -> int:
        """The given scan id if it exists, else the latest scan that stored anything."""
        if scan_id is None:
            latest = self.latest_scan_id()
            if latest is None:
                raise StoreError(f"{self.path} holds no completed scan yet",
                                 hint="run `cs-inventory scan` first")
            return latest
        if not self.db.execute("SELECT 1 FROM scans WHERE id = ?", [scan_id]).fetchone():
            raise StoreError(f"{self.path} has no scan {scan_id}",
                             hint="`cs-inventory show` or `history` lists the scans")
        return scan_id

    def scan(self, scan_id: int) -> dict[str, Any]:
        return next(self.db.query("SELECT * FROM scans WHERE id = ?", [scan_id]))

    def rows(self, table_name: str, scan_id: int) -> Iterator[dict[str, Any]]:
        if table_name not in schema.TABLES_BY_NAME:
            raise StoreError(f"no table {table_name!r}",
                             hint=f"tables: {', '.join(schema.EXPORTABLE_TABLES)}")
        if table_name == "scans":
            return self.db.query("SELECT * FROM scans WHERE id = ?", [scan_id])
        return self.db.query(f"SELECT * FROM {table_name} WHERE scan_id = ? ORDER BY rowid", [scan_id])

    def select(self, table_name: str, scan_id: int, columns: Sequence[str], where: str | None = None, *,
               time_limit_s: float = WHERE_TIME_LIMIT_S) -> Iterator[dict[str, Any]]:
        """Rows of one scan, streamed; ``where`` is the user's SQL condition, run with writes refused, stopped
        after ``time_limit_s`` seconds, and no value it makes may exceed ``WHERE_VALUE_BYTES``."""
        if table_name not in schema.TABLES_BY_NAME or any(
                c not in schema.TABLES_BY_NAME[table_name].column_names for c in columns):
            raise StoreError(f"no such table or column in {table_name!r}")
        scan_filter = "id = ?" if table_name == "scans" else "scan_id = ?"
        sql = f"SELECT {', '.join(columns)} FROM {table_name} WHERE {scan_filter}"
        if where:
            sql += f" AND ({where})"
        rows = self._bounded_rows(sql + " ORDER BY rowid", [scan_id], where, time_limit_s)
        next(rows)  # the statement runs now: a condition that cannot is said before a caller writes anything
        return rows  # type: ignore[return-value]  # the None it first yields is taken

    def _bounded_rows(self, sql: str, params: list[Any], where: str | None,
                      time_limit_s: float) -> Iterator[dict[str, Any] | None]:
        conn = self.db.conn
        deadline = time.monotonic() + time_limit_s
        length = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, WHERE_VALUE_BYTES)
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        self.db.execute("PRAGMA query_only = ON")
        try:
            cursor = conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            yield None  # prepared and run: ``select`` takes this, the caller the rows
            for row in cursor:
                yield dict(zip(names, row, strict=True))
        except sqlite3.Error as exc:
            timed_out = time.monotonic() > deadline and "interrupt" in str(exc)
            raise StoreError(f"--where {where!r}: " + (f"stopped after {time_limit_s:g}s" if timed_out else str(exc)),
                             hint="raise --where-timeout, or ask for less" if timed_out else
                             "an SQL condition on the table's columns, e.g. \"power_state = 'running'\"") from exc
        finally:
            with suppress(sqlite3.ProgrammingError):  # closed before this was (a reader that went away): no matter
                conn.set_progress_handler(None, 0)
                conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length)
                self.db.execute(f"PRAGMA query_only = {'OFF' if self.writable else 'ON'}")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, list(params)))

    def close(self) -> None:
        """Close; a writer that is the last one open leaves the file in rollback-journal mode.

        A file at rest then needs no -wal or -shm beside it, so read-only opens create none and
        work in a read-only directory. With another connection open the switch is refused at once
        (busy timeout 0) and the file stays in WAL mode until the last writer closes.
        """
        if self.writable:
            try:
                self.db.execute("PRAGMA busy_timeout = 0")
                self.db.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.OperationalError:
                pass  # "database is locked": someone else has it open
        self.db.close()


def open_store(path: Path) -> Store:
    """Open the database at ``path`` for writing: create it (owner-only) if missing, apply pending steps.

    A file that is not a cs-inventory database, or was written by a newer one, is refused before
    anything is written to it. An empty file (0 bytes, or SQLite with no tables) is initialised.
    """
    try:
        if not _create_if_missing(path) and path.stat().st_size:
            _open_for_reading(path)[0].close()  # refuses a foreign or newer file, touching nothing
        db = _connect(str(path), uri=False)
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from exc
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    try:
        db.enable_wal()  # readers go on while a scan writes; Store.close leaves WAL mode again
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = OFF")
        schema.migrations.apply(db)
        if db.execute("PRAGMA user_version").fetchone()[0] != schema.SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _unusable(path, exc, writing=True) from exc
    return Store(db, path, writable=True)


def open_store_readonly(path: Path) -> Store:
    """Open the database at ``path`` for reading only: it applies nothing, writes nothing, creates no file.

    Refuses a missing, empty or foreign file, and a database of another schema version: newer
    (upgrade cs-inventory) or older (``cs-inventory upgrade`` brings it up to date).
    """
    db, applied = _open_for_reading(path)
    if applied < schema.SCHEMA_VERSION:
        db.close()
        if not applied:
            raise StoreError(f"{path} is an empty SQLite database: no scan has been stored in it",
                             hint=f"`cs-inventory scan --db {path}` initialises it, or pass --db with the right file")
        raise StoreError(f"{path} has schema {applied}, older than this cs-inventory's schema {schema.SCHEMA_VERSION}",
                         hint=f"run `cs-inventory upgrade --db {path}` (a scan upgrades it too); "
                              "read commands never change a database")
    return Store(db, path, writable=False)


def schema_version_of(path: Path) -> int:
    """The number of schema steps applied to the database at ``path`` (read only, like open_store_readonly)."""
    db, applied = _open_for_reading(path)
    db.close()
    return applied


def upgrade_store(path: Path, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> tuple[int, int]:
    """Apply the pending schema steps to an existing database, holding the writer lock; return (from, to)."""
    if not path.exists():
        raise StoreError(f"database {path} does not exist", hint="nothing to upgrade; `cs-inventory scan` creates it")
    with writer_lock(path, lock_timeout):
        before = schema_version_of(path)
        open_store(path).close()
    return before, schema.SCHEMA_VERSION


# -- opening -------------------------------------------------------------------------------------
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OUR_TABLES = {t.name for t in schema.TABLES} | {schema.migrations.migrations_table}


def _create_if_missing(path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def _connect(target: str, *, uri: bool, writer: bool = True) -> Database:
    conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    db = Database(conn)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if writer:  # 256 MiB: index inserts of a big scan stay in memory. A reader keeps SQLite's own 2 MiB: the OS
        # caches the file, and a cache of its own only doubles it (a 100,000-VM diff: 339 → 137 MiB, 1.5 → 1.1 s)
        db.execute("PRAGMA cache_size = -262144")
    return db


def _open_for_reading(path: Path) -> tuple[Database, int]:
    """A read-only connection to a file that looks like ours, and the number of schema steps applied to it."""
    header = _read_header(path)
    try:
        db = _connect(_readonly_uri(path, header), uri=True, writer=False)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    try:
        db.execute("PRAGMA query_only = ON")
        return db, _applied_steps(db, path)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _unusable(path, exc) from exc
    except BaseException:
        db.close()
        raise


def _read_header(path: Path) -> bytes:
    """The first 100 bytes, read without SQLite, so that a file that is not a database is never opened by it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        raise StoreError(f"database {path} does not exist", hint="run `cs-inventory scan` first, or pass --db") from None
    except OSError as exc:
        raise StoreError(f"cannot read database {path}: {exc.strerror}") from exc
    if not header:
        raise StoreError(f"{path} is empty (0 bytes): no scan has been stored in it",
                         hint=f"`cs-inventory scan --db {path}` initialises it, or pass --db with the right file")
    if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
        raise StoreError(f"{path} is not an SQLite database",
                         hint="point [database] path or --db at a cs-inventory database")
    return header


def _readonly_uri(path: Path, header: bytes) -> str:
    """``mode=ro``, and ``immutable=1`` for a WAL-mode file that has no -wal beside it.

    To read a WAL-mode file SQLite needs its -wal and -shm files, and creates them when they are
    missing: a write beside the database, and impossible in a read-only directory. Without a -wal
    file every commit is in the database file itself, so ``immutable=1`` reads it alone. Our
    writers leave rollback mode behind when they close (``Store.close``), so this is the case of a
    file last closed by cs-inventory 0.1.0 or another tool; a writer starting during such a read is
    not seen by it. A rollback-mode file needs nothing beside it to be read.
    """
    uri = f"{path.absolute().as_uri()}?mode=ro"
    is_wal = header[18] == 2  # the file format version bytes: 1 rollback journal, 2 WAL
    if is_wal and not path.with_name(path.name + "-wal").exists():
        uri += "&immutable=1"
    return uri


def _applied_steps(db: Database, path: Path) -> int:
    """How many of our schema steps the database has; refuses one that is not ours or is newer."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables = {t for t in tables if not t.startswith("sqlite_")}  # SQLite's own (sqlite_sequence, sqlite_stat1)
    if not tables and not db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
        return 0  # an SQLite file with nothing in it: ours to initialise
    applied = [m.name for m in schema.migrations.applied(db)]
    if not applied:
        raise StoreError(f"{path} is an SQLite database, but not a cs-inventory one (no cs-inventory schema steps)",
                         hint="point [database] path or --db at a cs-inventory database, or at a new file")
    known = [step.name for step in schema.STEPS]
    if len(applied) > len(known):
        raise StoreError(f"{path} was written by a newer cs-inventory (schema {len(applied)}); "
                         f"this version reads schema {schema.SCHEMA_VERSION}", hint="upgrade cs-inventory")
    if applied != known[:len(applied)]:
        unknown = ", ".join(name for name in applied if name not in known) or ", ".join(applied)
        raise StoreError(f"{path} has schema steps this cs-inventory does not know ({unknown})",
                         hint="was it written by a newer or a development cs-inventory? upgrade cs-inventory")
    foreign = sorted(tables - _OUR_TABLES)
    if foreign:
        raise StoreError(f"{path} has tables cs-inventory does not make ({', '.join(foreign)})",
                         hint="is it another application's database? point [database] path or --db elsewhere")
    return len(applied)


_FULL = ("database or disk is full", "disk I/O error")  # SQLite's words for ENOSPC, EFBIG (a file-size limit), EIO


def _unusable(path: Path, exc: sqlite3.DatabaseError, writing: bool = False) -> StoreError:
    if writing and str(exc) in _FULL:
        return _unwritable(path, exc, "nothing was written")
    return StoreError(f"cannot use database {path}: {exc}",
                      hint="is it a cs-inventory database? point [database] path or --db elsewhere")


def _unwritable(path: Path, exc: sqlite3.DatabaseError, done: str) -> StoreError:
    return StoreError(f"cannot write {path}: {exc}; {done}",
                      hint="is the disk full, or a file-size limit set? free some space and run again")


@contextmanager
def writing(path: Path, done: str = "nothing was written (the transaction was rolled back)") -> Iterator[None]:
    """Writes to ``path``: a full disk, a file-size limit or an I/O error is a one-line error that says what became
    of the write (``done``), not an internal error."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if str(exc) not in _FULL:
            raise
        raise _unwritable(path, exc, done) from exc
