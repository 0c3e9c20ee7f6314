"""Datasette's metadata for a cs-inventory database: what each table and column means, and canned queries.

``datasette serve cs-inventory.db -m metadata.json`` then explains itself: every table and
``latest_*`` view carries its description and its columns' descriptions (from ``schema.TABLES``),
and the example SQL of docs/database.md (``queries.QUERIES``) is offered as canned queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inventory import schema
from inventory.normalise import storable
from inventory.queries import QUERIES
from inventory.version import TOOL_VERSION


def datasette_metadata(database: Path | str) -> dict[str, Any]:
    """The metadata for the database file ``database`` (Datasette names a database after its file's stem)."""
    tables: dict[str, Any] = {}
    for table in schema.TABLES:
        columns = {c.name: c.description for c in table.columns}
        tables[table.name] = {"description": table.description, "columns": columns}
        if table.name != "scans":
            tables[f"latest_{table.name}"] = {
                "description": f"The newest completed scan's rows of `{table.name}` (status ok or partial): "
                               f"{table.description}", "columns": columns}
    tables[schema.migrations.migrations_table] = {"hidden": True}
    queries = {q.name: {"title": q.title[:1].upper() + q.title[1:], "sql": q.sql} for q in QUERIES}
    return {
        "title": "cs-inventory",
        "description": f"Hypervisor inventory behind Apache CloudStack, one row set per scan (written by cs-inventory "
                      f"{TOOL_VERSION}; schema {schema.SCHEMA_VERSION}). The latest_* views hold the newest scan.",
        "databases": {storable(Path(database).stem): {"tables": tables, "queries": queries}},  # a byte not UTF-8
    }
