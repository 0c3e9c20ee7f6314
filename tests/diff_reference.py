"""The drift between two scans as ``inventory.diff`` made it before it compared them in SQLite (2026-11-28): every row
of both scans read into Python and matched there. Kept as the reference the SQL-side diff is held to
(``tests/test_diff_equivalence.py``), on the same stores: its tables matched in Python, all else — the scans
compared, which targets, hosts and storage are not, the findings — ``inventory.diff``'s own."""

from __future__ import annotations

from typing import Any

from inventory.diff import Change, ScanDiff, _diff, _key_text, _Skipped
from inventory.store import Store


def reference_diff(store: Store, old: int | None = None, new: int | None = None, *,
                   include_usage: bool = False) -> ScanDiff:
    return _diff(store, old, new, include_usage, _python_table_changes)


def _python_table_changes(store: Store, table: str, key: tuple[str, ...], old: int, new: int, skip: _Skipped,
                          ignored: set[str]) -> list[Change]:
    changes: list[Change] = []
    before = _index(store, table, old, key, skip.targets, skip.hosts, skip.storage)
    after = _index(store, table, new, key, skip.targets, skip.hosts, skip.storage)
    for ident in sorted(after.keys() - before.keys()):
        changes.append(Change(table, "added", ident[0], _key_text(ident), after[ident].get("name")))
    for ident in sorted(before.keys() - after.keys()):
        changes.append(Change(table, "removed", ident[0], _key_text(ident), before[ident].get("name")))
    for ident in sorted(before.keys() & after.keys()):
        fields = {c: (before[ident][c], after[ident].get(c)) for c in before[ident]
                  if c not in ignored and before[ident][c] != after[ident].get(c)}
        if fields:
            changes.append(Change(table, "changed", ident[0], _key_text(ident), after[ident].get("name"), fields))
    return changes


def _index(store: Store, table: str, scan_id: int, key: tuple[str, ...], skip_targets: set[str],
           skip_hosts: set[tuple[str, str]],
           skip_storage: set[tuple[str, str]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    storage_key = "key" if table == "storage" and skip_storage else None
    skip_vms = set()
    if skip_hosts and table in ("vm_disks", "vm_nics"):
        skip_vms = {(r["target"], r["key"]) for r in store.query(
            "SELECT target, key, host_key FROM vms WHERE scan_id = ?", [scan_id])
            if (r["target"], r["host_key"]) in skip_hosts}
    index = {}
    for row in store.rows(table, scan_id):
        target = row["target"]
        if target in skip_targets:
            continue
        if skip_hosts and (target, row.get("host_key") or row.get("key")) in skip_hosts:
            continue
        if skip_vms and (target, row.get("vm_key")) in skip_vms:
            continue
        if storage_key and (target, row[storage_key]) in skip_storage:
            continue
        index[(target, *(row[k] for k in key))] = row
    return index
