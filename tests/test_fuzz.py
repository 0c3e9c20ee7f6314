"""Property-based: hostile values anywhere in what a hypervisor answered, for every kind's recorded cases.

Hypothesis replaces leaves of a recorded answer with values a broken or hostile server could send
(64-bit overflows, non-finite floats, wrong types, deep nesting, huge text, markup) and runs the
kind's normaliser, the store and the checks. The only outcomes allowed: the target is stored — its
records, or its failure — and whatever was dropped is a listed problem. Nothing raises.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.cases import case_folders, load_case, replay
from inventory import open_store, run_checks
from inventory.store import ScanRow

CASES = case_folders()


def deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": [value]}
    return value


HOSTILE = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["false", "true", "[/]", "[link=http://x]ok[/link]", "\x1b[31mred", "{0}%s", "A" * 70_000,
                     "<!ENTITY x>", "9" * 40, "inf", "NaN", "-1", ""]),
    st.booleans(),
    st.none(),
    st.integers(min_value=30, max_value=80).map(deep),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value (containers too: a whole list can be replaced)."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:20]):
            found += leaves(item, (*path, index))
    return found


def put(value: Any, path: tuple[Any, ...], new: Any) -> None:
    """Replace what ``path`` leads to; a path an earlier edit already replaced leads nowhere and is skipped."""
    for step in path[:-1]:
        if not isinstance(value, (dict, list)) or (isinstance(value, dict) and step not in value) or (
                isinstance(value, list) and not (isinstance(step, int) and step < len(value))):
            return
        value = value[step]
    if isinstance(value, dict) or (isinstance(value, list) and isinstance(path[-1], int) and path[-1] < len(value)):
        value[path[-1]] = new


@pytest.mark.parametrize("folder", CASES, ids=lambda f: f"{f.parent.name}/{f.name}")
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_values_are_stored_or_listed_never_raised(folder: Path, tmp_path: Path, data: st.DataObject) -> None:
    read = load_case(folder)
    read.answers = copy.deepcopy(read.answers)
    paths = leaves(read.answers)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="edits")):
        put(read.answers, data.draw(st.sampled_from(paths), label="where"), data.draw(HOSTILE, label="value"))
    result = replay(read)
    assert result.status in ("ok", "partial", "failed")
    assert result.status != "ok" or not result.inventory.problems
    store = open_store(tmp_path / f"{folder.name}.db")
    try:
        scan_id = store.write_scan(ScanRow("t0", "t1", "partial", None, "4.20", "test", None), [result])
        assert len(list(store.rows("targets", scan_id))) == 1
        assert len(list(store.rows("vms", scan_id))) == len(result.inventory.vms)
        from_memory = run_checks(store, scan_id, "4.20", scanned=[result])  # what `scan` runs: the same findings
        assert run_checks(store, scan_id, "4.20") == from_memory
    finally:
        store.close()
