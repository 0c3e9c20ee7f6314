import csv
import io
import json
from pathlib import Path

import pytest

from inventory import ConfigError, StoreError, export_table, open_store
from inventory.export import spreadsheet_safe
from inventory.model import TargetResult, Vm
from inventory.schema import TABLES_BY_NAME
from tests.test_store import result, scan_row


def store_with(tmp_path: Path, names: list[str]):  # type: ignore[no-untyped-def]
    store = open_store(tmp_path / "inv.db")
    target: TargetResult = result(vms=0)
    target.inventory.vms.extend(Vm(key=f"k{i}", target="t1", host_key="h1", cluster_key="c1", name=n,
                                   is_template=False, raw_json={"n": i}) for i, n in enumerate(names))
    store.write_scan(scan_row(), [target])
    return store


def test_json_is_an_array_of_objects_keyed_by_column_names(tmp_path: Path) -> None:
    store = store_with(tmp_path, ["i-2-10-VM", "r-4-VM"])
    out = io.StringIO()
    assert export_table(store, "vms", None, "json", out) == 2
    rows = json.loads(out.getvalue())
    assert [list(r) for r in rows] == [TABLES_BY_NAME["vms"].column_names] * 2
    assert rows[0]["name"] == "i-2-10-VM" and rows[0]["is_template"] is False and rows[0]["raw_json"] == {"n": 0}


def test_ndjson_and_csv_have_the_same_columns(tmp_path: Path) -> None:
    store = store_with(tmp_path, ["a", "b", "c"])
    out = io.StringIO()
    export_table(store, "vms", 1, "ndjson", out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["name"] == "c"
    out = io.StringIO()
    export_table(store, "vms", 1, "csv", out)
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0] == TABLES_BY_NAME["vms"].column_names and len(table) == 4


def test_empty_table_is_valid_json(tmp_path: Path) -> None:
    store = store_with(tmp_path, [])
    out = io.StringIO()
    assert export_table(store, "findings", None, "json", out) == 0
    assert json.loads(out.getvalue()) == []


def test_csv_cells_a_spreadsheet_would_evaluate_are_inert(tmp_path: Path) -> None:
    evil = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "ok-name"]
    store = store_with(tmp_path, evil)
    out = io.StringIO()
    export_table(store, "vms", None, "csv", out)
    names = [row[TABLES_BY_NAME["vms"].column_names.index("name")]
             for row in csv.reader(io.StringIO(out.getvalue()))][1:]
    assert names[:6] == ["'" + e for e in evil[:6]]
    assert names[6] == "ok-name"
    assert spreadsheet_safe(-5) == -5  # numbers stay numbers


def test_bad_requests_are_clear(tmp_path: Path) -> None:
    store = store_with(tmp_path, ["a"])
    with pytest.raises(ConfigError, match="unknown table 'vmz'"):
        export_table(store, "vmz", None, "csv", io.StringIO())
    with pytest.raises(ConfigError, match="unknown export format 'xml'"):
        export_table(store, "vms", None, "xml", io.StringIO())
    with pytest.raises(StoreError, match="has no scan 9"):
        export_table(store, "vms", 9, "csv", io.StringIO())


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson"])
def test_a_bad_where_writes_nothing(tmp_path: Path, fmt: str) -> None:
    """`export --where "nosuchcol = 1" > s.json` left `[` (CSV its header) in the file: half a document."""
    store = store_with(tmp_path, ["a"])
    out = io.StringIO()
    with pytest.raises(StoreError, match="no such column: nosuchcol"):
        export_table(store, "vms", None, fmt, out, where="nosuchcol = 1")
    assert out.getvalue() == ""
    assert export_table(store, "vms", None, "json", out, where="name = 'a'") == 1  # the connection is as it was
