"""The schema stays true: frozen steps build what TABLES declares, a 0.1.0 database upgrades to the same
shape, and reading a database never writes a byte of it, nor a file beside it."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from inventory import StoreError, export_table, open_store, open_store_readonly, scan_summary, schema
from tests.conftest import ROOT, run_tool
from tests.test_store import result, scan_row

FIXTURE = ROOT / "fixtures" / "store" / "cs-inventory-0.1.0.db"
DDL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}


def connect_ro(path: Path) -> sqlite3.Connection:
    """A plain read-only look at a file at rest (immutable: no locks, no -wal/-shm), for the assertions."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)


def shape(path: Path) -> dict[str, Any]:
    """Tables with their columns and types, indexes with their columns and uniqueness, views' SQL."""
    db = connect_ro(path)
    objects = db.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
    tables = {name: [(c[1], c[2], c[5]) for c in db.execute(f'PRAGMA table_info("{name}")')]
              for kind, name, _ in objects if kind == "table"}
    indexes = {name: (table, unique, [c[2] for c in db.execute(f'PRAGMA index_info("{name}")')])
               for table in tables for _, name, unique, *_ in db.execute(f'PRAGMA index_list("{table}")')}
    views = {name: " ".join(sql.split()) for kind, name, sql in objects if kind == "view"}
    db.close()
    return {"tables": tables, "indexes": indexes, "views": views}


def fresh(tmp_path: Path, name: str = "fresh.db") -> Path:
    path = tmp_path / name
    open_store(path).close()
    return path


def test_a_fresh_database_is_what_tables_declares(tmp_path: Path) -> None:
    built = shape(fresh(tmp_path))
    declared = {t.name: [(c.name, DDL_TYPES[c.type], int(t.name == "scans" and c.name == "id")) for c in t.columns]
                for t in schema.TABLES}
    assert {n: cols for n, cols in built["tables"].items() if n != "_sqlite_migrations"} == declared
    assert set(built["views"]) == {f"latest_{t.name}" for t in schema.TABLES if t.name != "scans"}
    for table in schema.TABLES:  # every table but scans is found by scan_id first
        if table.name != "scans":
            assert any(t == table.name and cols[0] == "scan_id" for t, _, cols in built["indexes"].values())
    # A column declared since=N needs step N: there are as many steps as the newest column says.
    assert max(c.since for t in schema.TABLES for c in t.columns) <= schema.SCHEMA_VERSION == len(schema.STEPS)


def test_version_and_steps_are_recorded(tmp_path: Path) -> None:
    db = connect_ro(fresh(tmp_path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")] == \
        [s.name for s in schema.STEPS] == ["0001_initial", "0002_latest_views", "0003_requirement_facts",
                                           "0004_cloudstack_api", "0005_finding_objects", "0006_storage_images"]


def sqlite_master(db: sqlite3.Connection | Database) -> list[tuple[Any, ...]]:
    return list(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index') "
                           "ORDER BY name").fetchall())


def test_step_1_is_the_released_schema_whatever_tables_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """0001 is literal code: emptying the declaration changes nothing it makes, byte for byte."""
    monkeypatch.setattr(schema, "TABLES", ())
    monkeypatch.setattr(schema, "TABLES_BY_NAME", {})
    db = Database(sqlite3.connect(":memory:"))
    schema.migrations.apply(db, stop_before=schema.STEPS[1].name)
    assert sqlite_master(db) == sqlite_master(connect_ro(FIXTURE))


def test_the_010_database_upgrades_to_a_fresh_ones_shape_and_keeps_its_data(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, old)
    columns = {t.name: ", ".join(c.name for c in t.columns if c.since == 1) for t in schema.TABLES}
    before = {t.name: connect_ro(old).execute(f"SELECT {columns[t.name]} FROM {t.name} ORDER BY rowid").fetchall()
              for t in schema.TABLES if columns[t.name]}  # tables of later steps are not in 0.1.0
    assert before["scans"] and before["vms"] and before["findings"]
    open_store(old).close()
    assert shape(old) == shape(fresh(tmp_path))
    db = connect_ro(old)
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")] == [s.name for s in schema.STEPS]
    for table, rows in before.items():  # the old columns keep their values; newer ones are NULL (not known)
        assert db.execute(f"SELECT {columns[table]} FROM {table} ORDER BY rowid").fetchall() == rows, table
    assert db.execute("SELECT COUNT(*) FROM latest_vms").fetchone()[0] == len(before["vms"])
    with open_store_readonly(old) as store:  # scan 1, written by 0.1.0, through the read path
        summary = scan_summary(store, 1)
        assert summary["totals"] == {"hosts": 2, "vms": 6}
        out = io.StringIO()
        assert export_table(store, "findings", None, "json", out) == len(before["findings"])
        assert [f["rule_id"] for f in json.loads(out.getvalue())] == [r[3] for r in before["findings"]]
        # 0.1.0's findings are about one object each: numbered per scan, each its own finding object
        per_object = [tuple(f[c] for c in columns["findings"].split(", ")) for scan in sorted({r[0] for r in before["findings"]})
                      for f in store.finding_objects(scan)]
        assert per_object == before["findings"]
        assert {r[0] for r in db.execute("SELECT object_count FROM findings")} == {1}
        assert db.execute("SELECT scan_id, MIN(number), MAX(number), COUNT(*) FROM findings GROUP BY 1").fetchall() == [
            (scan, 1, n, n) for scan, n in db.execute("SELECT scan_id, COUNT(*) FROM findings GROUP BY 1")]


# -- refusals leave the file as it was -------------------------------------------------------------

def make_sqlite(path: Path, *sql: str) -> None:
    db = sqlite3.connect(path)
    for statement in sql:
        db.execute(statement)
    db.commit()
    db.close()


def newer(path: Path, wal: bool = False) -> None:
    open_store(path).close()
    make_sqlite(path, "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                      "VALUES ('cs-inventory', '0099_from_the_future', '2030-01-01')",
                *(["PRAGMA journal_mode = WAL"] if wal else []))


def other_tools_migrations(path: Path) -> None:
    other = Migrations("someone-else")
    other(name="0001")(lambda db: db.execute("CREATE TABLE notes (x TEXT)"))
    db = Database(path)
    other.apply(db)
    db.close()


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda p: None, "does not exist"),
    "empty file": (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    "text file": (lambda p: p.write_text("not a database\n" * 50), "is not an SQLite database"),
    "truncated header": (lambda p: p.write_bytes(b"SQLite format 3\x00"), "is not an SQLite database"),
    "empty SQLite": (lambda p: make_sqlite(p, "PRAGMA user_version = 7"), "empty SQLite database"),
    "foreign SQLite": (lambda p: make_sqlite(p, "CREATE TABLE notes (x TEXT)"), "not a cs-inventory one"),
    "another tool's migrations": (other_tools_migrations, "not a cs-inventory one"),
    "ours plus a foreign table": (lambda p: (open_store(p).close(), make_sqlite(p, "CREATE TABLE notes (x)")),
                                  r"tables cs-inventory does not make \(notes\)"),
    "newer": (newer, rf"written by a newer cs-inventory \(schema {schema.SCHEMA_VERSION + 1}\); this version reads "
                     rf"schema {schema.SCHEMA_VERSION}"),
    "newer, WAL at rest": (lambda p: newer(p, wal=True), "written by a newer cs-inventory"),
    "unknown step": (lambda p: (open_store(p).close(), make_sqlite(
        p, "UPDATE _sqlite_migrations SET name = '0002_something_else' WHERE name = '0002_latest_views'")),
        r"schema steps this cs-inventory does not know \(0002_something_else\)"),
    "older (0.1.0)": (lambda p: shutil.copyfile(FIXTURE, p),
                      rf"older than this cs-inventory's schema {schema.SCHEMA_VERSION}.*cs-inventory upgrade"),
}
WRITER_MAY_USE = {"missing", "empty file", "empty SQLite", "older (0.1.0)"}


def state(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in the folder with its sha256 and mtime: side files (-wal, -shm, -journal) show up too."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}


REFUSALS = [pytest.param(case, opener, id=f"{case}-{kind}") for case in CASES
            for kind, opener in (("read", open_store_readonly), ("write", open_store))
            if kind == "read" or case not in WRITER_MAY_USE]


@pytest.mark.parametrize("case, opener", REFUSALS)
def test_a_refused_file_is_left_byte_for_byte(case: str, opener: Callable[[Path], Any], tmp_path: Path) -> None:
    make, message = CASES[case]
    path = tmp_path / "inv.db"
    make(path)
    assert not list(tmp_path.glob("*-*")), "the case itself left side files"
    was = state(tmp_path)
    with pytest.raises(StoreError) as refused:
        opener(path)
    assert state(tmp_path) == was
    error = refused.value
    assert re.search(message, error.one_line()), error.one_line()
    assert "\n" not in error.message and error.hint and "\n" not in error.hint


def test_the_writer_initialises_an_empty_file_and_upgrades_an_old_one(tmp_path: Path) -> None:
    for case in WRITER_MAY_USE:
        path = tmp_path / f"{case}.db"
        CASES[case][0](path)
        open_store(path).close()
        assert shape(path) == shape(fresh(tmp_path)), case


# -- reading never writes ----------------------------------------------------------------------------

def stored(path: Path, scans: int = 2, wal_at_rest: bool = False) -> Path:
    with open_store(path) as store:
        for vms in range(2, 2 + scans):
            store.write_scan(scan_row(), [result(vms=vms)])
    if wal_at_rest:  # how 0.1.0 (and other tools) leave a file: WAL mode, no -wal or -shm beside it
        make_sqlite(path, "PRAGMA journal_mode = WAL")
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return path


def test_writers_leave_a_self_contained_file(tmp_path: Path) -> None:
    path = stored(tmp_path / "inv.db")
    assert path.read_bytes()[18:20] == b"\x01\x01"  # rollback-journal mode: readers need nothing beside it


@contextmanager
def read_only_directory(folder: Path) -> Iterator[bool]:
    """chattr +i: not even root may create a file in it. False where the filesystem has no such flag."""
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        yield made
    finally:
        if made:
            subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("wal_at_rest", [False, True], ids=["rollback", "wal"])
def test_reading_in_a_read_only_directory(wal_at_rest: bool, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = stored(folder / "inv.db", wal_at_rest=wal_at_rest)
    was = state(folder)
    with read_only_directory(folder) as enforced:
        if enforced:
            with pytest.raises(PermissionError):
                (folder / "probe").touch()
            if wal_at_rest:  # what SQLite alone does: it must create -wal and -shm to read a WAL file
                with pytest.raises(sqlite3.OperationalError):
                    sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True).execute("SELECT 1 FROM scans").fetchall()
        # Where chattr is unavailable the tests run as root, who writes anywhere: then the proof that
        # nothing was written is the unchanged hashes, mtimes and file list below.
        with open_store_readonly(path) as store:
            assert scan_summary(store, store.resolve_scan(None))["totals"] == {"hosts": 1, "vms": 3}
            assert export_table(store, "vms", 1, "csv", io.StringIO(), where="power_state = 'running'") == 2
    assert state(folder) == was


def test_a_reader_sees_a_scan_while_a_writer_is_open(tmp_path: Path) -> None:
    path = stored(tmp_path / "inv.db", scans=1)
    writer = open_store(path)
    writer.write_scan(scan_row(), [result(vms=5)])
    with open_store_readonly(path) as reader:
        assert reader.latest_scan_id() == 2
        started = time.monotonic()
        writer.close()  # cannot leave WAL mode with a reader attached, and does not wait for it
        assert time.monotonic() - started < 1
        assert len(reader.query("SELECT * FROM latest_vms")) == 5
    open_store(path).close()  # the next writer alone tidies up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.db"]


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    with open_store_readonly(stored(tmp_path / "inv.db")) as store:
        with pytest.raises(StoreError, match="opened read-only"):
            store.write_findings(1, [], [])


# -- through the installed command ---------------------------------------------------------------------

READS = [["show"], ["show", "--format", "json"], ["export", "--table", "vms", "--format", "json"],
         ["export", "--table", "findings"], ["history"], ["diff"], ["diff", "1", "2", "--format", "json"]]


@pytest.mark.parametrize("wal_at_rest", [False, True], ids=["rollback", "wal"])
def test_read_commands_leave_the_database_unchanged(wal_at_rest: bool, tmp_path: Path) -> None:
    path = stored(tmp_path / "inv.db", wal_at_rest=wal_at_rest)
    was = state(tmp_path)
    for command in READS:
        done = run_tool(*command, "--db", str(path))
        assert done.returncode == 0, (command, done.stderr)
    assert state(tmp_path) == was


def test_an_old_database_is_refused_by_readers_and_upgraded_on_request(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copyfile(FIXTURE, path)
    was = state(tmp_path)
    for command in READS:
        refused = run_tool(*command, "--db", str(path))
        assert refused.returncode == 2, command
        assert "has schema 1, older than" in refused.stderr and f"cs-inventory upgrade --db {path}" in refused.stderr
    assert state(tmp_path) == was
    upgraded = run_tool("upgrade", "--db", str(path))
    assert upgraded.returncode == 0 and f"schema 1 → {schema.SCHEMA_VERSION}" in upgraded.stdout, upgraded.stderr
    assert run_tool("upgrade", "--db", str(path)).stdout.strip().endswith(f"schema {schema.SCHEMA_VERSION}, up to date")
    shown = run_tool("show", "--db", str(path), "--format", "json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["totals"] == {"hosts": 2, "vms": 6}


def test_upgrade_refuses_a_newer_database_and_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    newer(path)
    was = state(tmp_path)
    refused = run_tool("upgrade", "--db", str(path))
    assert refused.returncode == 2 and "hint: upgrade cs-inventory" in refused.stderr
    assert {k: v for k, v in state(tmp_path).items() if not k.endswith(".lock")} == was
    missing = run_tool("upgrade", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "none.db").exists()
