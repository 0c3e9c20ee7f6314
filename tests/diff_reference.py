"""The drift between two scans as ``inventory.diff`` made it before it compared them in SQLite (2026-11-28): every row
of both scans read into Python and matched there. Kept as the reference the SQL-side diff is held to
(``tests/test_diff_equivalence.py``), on the same stores. What did not change — which targets, hosts and storage are
not compared, the findings — it takes from ``inventory.diff``."""

from __future__ import annotations

from typing import Any

from inventory.diff import (
    IGNORED, KEYS, USAGE, Change, ScanDiff, _findings, _key_text, _not_compared, _storage_of_only, default_pair,
)
from inventory.errors import StoreError
from inventory.store import Store


def reference_diff(store: Store, old: int | None = None, new: int | None = None, *,
                   include_usage: bool = False) -> ScanDiff:
    if old is None and new is None:
        old, new = default_pair(store)
    elif old is None or new is None:
        raise StoreError("give both scans to compare, or neither (the last two completed scans)")
    old, new = store.resolve_scan(old), store.resolve_scan(new)
    not_compared, skip_targets, skip_hosts = _not_compared(store, old, new)
    skip_storage = _storage_of_only(store, old, new, skip_hosts)
    changes: list[Change] = []
    ignored = IGNORED if include_usage else IGNORED | USAGE
    for table, key in KEYS.items():
        before = _index(store, table, old, key, skip_targets, skip_hosts, skip_storage)
        after = _index(store, table, new, key, skip_targets, skip_hosts, skip_storage)
        for ident in sorted(after.keys() - before.keys()):
            changes.append(Change(table, "added", ident[0], _key_text(ident), after[ident].get("name")))
        for ident in sorted(before.keys() - after.keys()):
            changes.append(Change(table, "removed", ident[0], _key_text(ident), before[ident].get("name")))
        for ident in sorted(before.keys() & after.keys()):
            fields = {c: (before[ident][c], after[ident].get(c)) for c in before[ident]
                      if c not in ignored and before[ident][c] != after[ident].get(c)}
            if fields:
                changes.append(Change(table, "changed", ident[0], _key_text(ident), after[ident].get("name"), fields))
    old_findings = _findings(store, old, skip_targets)
    new_findings = _findings(store, new, skip_targets)
    return ScanDiff(old, new, changes,
                    findings_new=[new_findings[k] for k in sorted(new_findings.keys() - old_findings.keys())],
                    findings_resolved=[old_findings[k] for k in sorted(old_findings.keys() - new_findings.keys())],
                    not_compared=not_compared)


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
