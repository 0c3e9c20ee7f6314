"""Summaries of a stored scan, for `show` and the end of `scan`."""

from __future__ import annotations

from typing import Any

from inventory.store import Store

ROLES = ("user", "router", "ssvm", "cpvm", "unmanaged")


def scan_summary(store: Store, scan_id: int) -> dict[str, Any]:
    """A scan's targets with their clusters, hosts, VMs by role and power state, and failures."""
    scan = store.scan(scan_id)
    targets = store.query("SELECT name, hypervisor, endpoint, status, error, duration_s, api_calls "
                          "FROM targets WHERE scan_id = ? ORDER BY rowid", [scan_id])
    clusters = store.query(
        "SELECT h.target, COALESCE(h.cluster_key, '') AS cluster, COUNT(*) AS hosts, "
        "(SELECT COUNT(*) FROM vms v WHERE v.scan_id = h.scan_id AND v.target = h.target "
        " AND COALESCE(v.cluster_key, '') = COALESCE(h.cluster_key, '')) AS vms "
        "FROM hosts h WHERE h.scan_id = ? GROUP BY h.target, h.cluster_key ORDER BY h.target, cluster",
        [scan_id])
    roles = store.query(
        "SELECT target, COALESCE(cluster_key, '') AS cluster, cs_role, COUNT(*) AS n, "
        "SUM(power_state = 'running') AS running FROM vms WHERE scan_id = ? "
        "GROUP BY target, cluster_key, cs_role", [scan_id])
    by_cluster: dict[tuple[str, str], dict[str, Any]] = {}
    names = {(c["target"], c["key"]): c["name"] for c in store.query(
        "SELECT target, key, name FROM clusters WHERE scan_id = ?", [scan_id])}
    for row in clusters:
        by_cluster[(row["target"], row["cluster"])] = {
            "cluster": names.get((row["target"], row["cluster"]), row["cluster"]), "cluster_key": row["cluster"],
            "hosts": row["hosts"], "vms": row["vms"], "running": 0,
            "roles": {role: 0 for role in ROLES}}
    for row in roles:
        entry = by_cluster.get((row["target"], row["cluster"]))
        if entry is not None:
            entry["roles"][row["cs_role"]] = row["n"]
            entry["running"] += row["running"] or 0
    failures = store.query("SELECT target, endpoint, status, error FROM endpoints "
                           "WHERE scan_id = ? AND status != 'ok' ORDER BY rowid", [scan_id])
    for target in targets:
        target["clusters"] = [c for (t, _), c in by_cluster.items() if t == target["name"]]
    return {"scan": scan, "targets": targets, "failures": failures,
            "totals": {"hosts": sum(c["hosts"] for c in by_cluster.values()),
                       "vms": sum(c["vms"] for c in by_cluster.values())}}

