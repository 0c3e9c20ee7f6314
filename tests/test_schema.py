"""The schema stays true: frozen steps build what TABLES declares, a 0.1.0 database upgrades to the same
shape."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from inventory import open_store, schema
from tests.conftest import ROOT

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
        [s.name for s in schema.STEPS] == ["0001_initial", "0002_latest_views"]


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
    before = {t.name: connect_ro(old).execute(f"SELECT * FROM {t.name} ORDER BY rowid").fetchall()
              for t in schema.TABLES}
    assert before["scans"] and before["vms"] and before["findings"]
    open_store(old).close()
    assert shape(old) == shape(fresh(tmp_path))
    db = connect_ro(old)
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert [r[0] for r in db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")] == [s.name for s in schema.STEPS]
    for table, rows in before.items():
        assert db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() == rows, table
    assert db.execute("SELECT COUNT(*) FROM latest_vms").fetchone()[0] == len(before["vms"])
