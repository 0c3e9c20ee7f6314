"""Exports: CSV, JSON and NDJSON of one table of one scan, in the shape DESIGN.md promises.

JSON is an array of objects whose keys are the table's column names; NDJSON one such object
per line; CSV a header row of the same names. CSV cells a spreadsheet would read as a formula
(starting with = + - @ tab or CR — VM names are chosen by tenants) are prefixed with a quote.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from inventory import schema
from inventory.errors import ConfigError
from inventory.normalise import is_unicode
from inventory.store import WHERE_TIME_LIMIT_S, Store

FORMATS = ("csv", "json", "ndjson")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_table(store: Store, table: str, scan_id: int | None, fmt: str, out: TextIO, *,
                 where: str | None = None, columns: Sequence[str] | None = None,
                 where_timeout: float = WHERE_TIME_LIMIT_S) -> int:
    """Write one table of one scan (latest if ``scan_id`` is None); return the row count.

    ``columns`` picks a subset (in that order); ``where`` is an SQL condition on the table's
    columns, run on a read-only connection (e.g. ``power_state = 'running'``).
    """
    check_format(fmt)
    if table not in schema.TABLES_BY_NAME:
        raise ConfigError(f"unknown table {table!r}", hint=f"tables: {', '.join(schema.EXPORTABLE_TABLES)}")
    known = schema.TABLES_BY_NAME[table].column_names
    chosen = list(columns) if columns else known
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ConfigError(f"table {table} has no column {unknown[0]!r}", hint=f"columns: {', '.join(known)}")
    if not where_timeout > 0:
        raise ConfigError(f"--where-timeout must be more than 0 seconds, not {where_timeout:g}")
    if where is not None and not is_unicode(where):  # a byte the shell passed that is not UTF-8
        raise ConfigError(f"--where {where!r} holds a byte that is not UTF-8", hint="write the condition in UTF-8")
    rows = store.select(table, store.resolve_scan(scan_id), chosen, where, time_limit_s=where_timeout)
    return write_rows(rows, chosen, fmt, out, table)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")


def write_rows(rows: Iterable[dict[str, Any]], columns: list[str], fmt: str, out: TextIO,
               table: str | None = None) -> int:
    check_format(fmt)
    if fmt != "csv" and table is not None:
        rows = typed_rows(rows, table)
    return {"csv": write_csv, "json": write_json, "ndjson": write_ndjson}[fmt](rows, columns, out)


def typed_rows(rows: Iterable[dict[str, Any]], table: str) -> Iterator[dict[str, Any]]:
    """JSON gets real booleans and ``raw_json`` as a nested object, not SQLite's 0/1 and text."""
    bools = [c.name for c in schema.TABLES_BY_NAME[table].columns if c.type is bool]
    for row in rows:
        for name in bools:
            if row.get(name) is not None:
                row[name] = bool(row[name])
        if row.get("raw_json"):
            row["raw_json"] = json.loads(row["raw_json"])
        yield row


def write_csv(rows: Iterable[dict[str, Any]], columns: list[str], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; and \r in a cell gets quoted
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(c)) for c in columns])
        count += 1
    return count


def write_json(rows: Iterable[dict[str, Any]], columns: list[str], out: TextIO) -> int:
    out.write("[")
    count = 0
    for row in rows:
        out.write(",\n" if count else "\n")
        out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_ndjson(rows: Iterable[dict[str, Any]], columns: list[str], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")
        count += 1
    return count


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would evaluate is made inert with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
