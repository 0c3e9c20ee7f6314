"""The xlsx workbook, written by the installed command and read back with openpyxl."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openpyxl

from fixtures import estate
from inventory.schema import EXPORTABLE_TABLES
from inventory.workbook import sheet_columns
from tests.conftest import run_tool


def export(db: Path, out: Path, *args: str) -> openpyxl.Workbook:
    done = run_tool("export", "--db", str(db), "--format", "xlsx", "--output", str(out), *args)
    assert done.returncode == 0, done.stderr
    assert "sheets" in done.stderr and out.stat().st_mode & 0o777 == 0o600
    return openpyxl.load_workbook(out)


def test_one_sheet_per_table_with_header_frozen_panes_filter_and_widths(tmp_path: Path, lab_like: Path) -> None:
    book = export(lab_like, tmp_path / "inventory.xlsx")
    assert book.sheetnames == list(EXPORTABLE_TABLES)
    db = sqlite3.connect(lab_like)
    for table in EXPORTABLE_TABLES:
        sheet = book[table]
        columns = sheet_columns(table)
        rows = list(sheet.iter_rows(values_only=True))
        assert list(rows[0]) == columns and "raw_json" not in columns
        scan_filter = "id" if table == "scans" else "scan_id"
        assert len(rows) - 1 == db.execute(f"SELECT COUNT(*) FROM {table} WHERE {scan_filter} = 2").fetchone()[0]
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(columns))}{len(rows)}"
        widths = [sheet.column_dimensions[openpyxl.utils.get_column_letter(i + 1)].width for i in range(len(columns))]
        assert all(8 <= w <= 60 for w in widths), (table, widths)
    hosts = list(book["hosts"].iter_rows(values_only=True))
    name = hosts[0].index("name")
    assert book["hosts"].column_dimensions[openpyxl.utils.get_column_letter(name + 1)].width >= 8
    memory = hosts[0].index("memory_bytes")
    assert all(isinstance(r[memory], int) for r in hosts[1:] if r[memory] is not None)  # sizes stay numbers
    hvm = hosts[0].index("hvm")
    assert {r[hvm] for r in hosts[1:]} <= {True, False, None} and True in {r[hvm] for r in hosts[1:]}


def test_cells_a_spreadsheet_would_evaluate_are_inert_and_text_stays_text(tmp_path: Path, lab_like: Path) -> None:
    book = export(lab_like, tmp_path / "vms.xlsx", "--table", "vms", "--scan", "2")
    assert book.sheetnames == ["vms"]
    sheet = book["vms"]
    header = [c.value for c in sheet[1]]
    cells = {c.value: c for c in (row[header.index("name")] for row in sheet.iter_rows(min_row=2))}
    formula = "'" + estate.HOSTILE_NAMES[2]
    assert formula in cells and cells[formula].data_type == "s"  # the same leading apostrophe as CSV
    assert not any(c.data_type == "f" for row in sheet.iter_rows() for c in row)
    assert "bell\\x07vm\u202egnp.exe\u200b\x85" in cells  # what XML cannot hold escaped; the rest is data, as in CSV
    assert estate.HOSTILE_NAMES[0] in cells and "{{7*7}}" in cells


def test_tables_given_are_the_sheets_in_that_order(tmp_path: Path, lab_like: Path) -> None:
    book = export(lab_like, tmp_path / "two.xlsx", "--table", "storage", "--table", "hosts", "--scan", "1")
    assert book.sheetnames == ["storage", "hosts"]
    unknown = run_tool("export", "--db", str(lab_like), "--format", "xlsx", "--table", "vmz", "--output",
                       str(tmp_path / "x.xlsx"))
    assert unknown.returncode == 2 and "unknown table 'vmz'" in unknown.stderr and not (tmp_path / "x.xlsx").exists()
    to_stdout = run_tool("export", "--db", str(lab_like), "--format", "xlsx")
    assert to_stdout.returncode == 2 and "--output" in to_stdout.stderr
    subset = run_tool("export", "--db", str(lab_like), "--format", "xlsx", "--where", "1", "--output",
                      str(tmp_path / "y.xlsx"))
    assert subset.returncode == 2 and "--where and --columns apply to one table" in subset.stderr


def test_characters_xml_forbids_are_escaped_and_the_sheet_is_well_formed(tmp_path: Path, lab_like: Path) -> None:
    """U+FFFE and U+FFFF are not XML 1.0 characters: written raw, Excel and openpyxl refuse the workbook."""
    import shutil
    import zipfile
    from xml.etree import ElementTree

    db = tmp_path / "copy.db"
    shutil.copy(lab_like, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE vms SET name = name || ? WHERE scan_id = 2 AND name LIKE 'bell%'", ["\ufffe\uffff\x0b"])
    out = tmp_path / "vms.xlsx"
    done = run_tool("export", "--db", str(db), "--format", "xlsx", "--output", str(out), "--table", "vms")
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as archive:
        for name in archive.namelist():
            if name.endswith(".xml"):
                ElementTree.fromstring(archive.read(name))  # well-formed
    column = sheet_columns("vms").index("name")
    names = [row[column] for row in openpyxl.load_workbook(out)["vms"].iter_rows(values_only=True)]
    assert "bell\\x07vm\u202egnp.exe\u200b\x85\\ufffe\\uffff\\x0b" in names, names
