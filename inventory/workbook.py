"""The xlsx workbook: one sheet per table of a scan, for whoever plans capacity in a spreadsheet.

Each sheet has the table's columns as a header row (frozen, with an auto-filter) and widths fitted to
what the columns hold; ``raw_json`` stays out (the columns carry what a sheet needs, and a cell holds at
most 32,767 characters). Text a spreadsheet would evaluate gets the same leading apostrophe as in CSV
(``export.spreadsheet_safe``), text is always stored as text, and the characters the xlsx format (XML 1.0)
cannot hold (control characters, lone surrogates, U+FFFE and U+FFFF) are written as ``\\xNN`` or ``\\uNNNN``.
Booleans are TRUE/FALSE, sizes stay numbers (bytes).
"""

from __future__ import annotations

import re
from contextlib import suppress
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from inventory import schema
from inventory.errors import ConfigError
from inventory.export import spreadsheet_safe
from inventory.normalise import shown_escape
from inventory.store import Store

if TYPE_CHECKING:  # openpyxl is imported when a workbook is written: every other command starts faster without it
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

LEFT_OUT = {"raw_json"}
MAX_ROWS = 1_048_575  # a sheet's rows, less the header
MAX_CELL = 32_767
WIDTH_SAMPLE = 1000  # rows looked at to size the columns
# what XML 1.0 (and so xlsx) cannot hold: C0 controls but tab, LF and CR; lone surrogates; U+FFFE and U+FFFF
ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def sheet_columns(table: str) -> list[str]:
    return [c for c in schema.TABLES_BY_NAME[table].column_names if c not in LEFT_OUT]


def write_workbook(store: Store, scan_id: int | None, tables: Sequence[str] | None, out: IO[bytes]) -> dict[str, int]:
    """Write the tables (every table by default) of one scan (latest by default); return rows per sheet."""
    chosen = list(tables or schema.EXPORTABLE_TABLES)
    unknown = [t for t in chosen if t not in schema.TABLES_BY_NAME]
    if unknown:
        raise ConfigError(f"unknown table {unknown[0]!r}", hint=f"tables: {', '.join(schema.EXPORTABLE_TABLES)}")
    resolved = store.resolve_scan(scan_id)
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    counts = {}
    for table in dict.fromkeys(chosen):
        columns = sheet_columns(table)
        rows = list(store.select(table, resolved, columns))
        if len(rows) > MAX_ROWS:
            raise ConfigError(f"{table} has {len(rows)} rows, more than a worksheet holds",
                              hint=f"export it as CSV: --table {table} --format csv")
        _sheet(book.create_sheet(table), table, columns, rows)
        counts[table] = len(rows)
    _save(book, out)
    return counts


def _save(book: Any, out: IO[bytes]) -> None:
    """``Workbook.save``, with the zip archive closed when writing fails (a full disk): left open, it is closed
    when collected, after ``out`` is, and that prints a traceback beside the one-line error."""
    from zipfile import ZIP_DEFLATED, ZipFile

    from openpyxl.writer.excel import ExcelWriter

    archive = ZipFile(out, "w", ZIP_DEFLATED, allowZip64=True)
    try:
        ExcelWriter(book, archive).save()  # closes the archive when done
    finally:
        with suppress(OSError, ValueError):  # what failed is said by the caller
            archive.close()


def _sheet(sheet: WriteOnlyWorksheet, table: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    from openpyxl.utils import get_column_letter

    bools = {c.name for c in schema.TABLES_BY_NAME[table].columns if c.type is bool}
    values = [[_value(row[c], c in bools) for c in columns] for row in rows]
    # A write-only sheet takes its widths, panes and filter before the first row. openpyxl gives it the
    # worksheet's column_dimensions and auto_filter at run time; its type stubs do not declare them.
    dimensions, auto_filter = sheet.column_dimensions, sheet.auto_filter  # type: ignore[attr-defined]
    for index, name in enumerate(columns, start=1):
        longest = max([len(name)] + [len(str(v[index - 1])) for v in values[:WIDTH_SAMPLE] if v[index - 1] is not None])
        dimensions[get_column_letter(index)].width = min(max(longest + 2, 8), 60)
    sheet.freeze_panes = "A2"
    auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"
    sheet.append(columns)
    for line in values:
        sheet.append([_cell(sheet, v) for v in line])


def _value(value: Any, is_bool: bool) -> Any:
    if value is None:
        return None
    if is_bool:
        return bool(value)
    if isinstance(value, str):
        value = ILLEGAL.sub(lambda m: shown_escape(m.group()), spreadsheet_safe(value))
        return value if len(value) <= MAX_CELL else value[:MAX_CELL - 1] + "…"
    return value


def _cell(sheet: WriteOnlyWorksheet, value: Any) -> Any:
    from openpyxl.cell import WriteOnlyCell

    if not isinstance(value, str):
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"  # text stays text: no formula, no error value like "#N/A"
    return cell
