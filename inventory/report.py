"""Summaries of a stored scan: for `show` and the end of `scan`, and the audit the HTML report and metrics show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from inventory import releases
from inventory.diff import ScanDiff, diff_scans
from inventory.errors import ConfigError
from inventory.rulebook import SEVERITIES
from inventory.rules.storage import used_share
from inventory.store import Store
from inventory.view import InventoryView, Setting

ROLES = ("user", "router", "internal_lb", "ssvm", "cpvm", "worker", "unmanaged")


def unread(store: Store, scan_id: int) -> list[dict[str, Any]]:
    """What a scan did not read, or not fully, with the reason: each endpoint (host, pool master, vCenter) that
    was not ``ok``, and each target that was not ``ok`` with no such endpoint to say why (one a deadline or a
    signal stopped before any endpoint was read; one whose values were malformed), in the order they were read."""
    return store.query(
        "SELECT target, endpoint, status, error FROM ("
        " SELECT e.target, e.endpoint, e.status, e.error, t.rowid AS t_order, e.rowid AS e_order FROM endpoints e"
        " JOIN targets t ON t.scan_id = e.scan_id AND t.name = e.target WHERE e.scan_id = ? AND e.status != 'ok'"
        " UNION ALL"
        " SELECT t.name, COALESCE(t.endpoint, ''), t.status, t.error, t.rowid, 0 FROM targets t"
        " WHERE t.scan_id = ? AND t.status != 'ok' AND NOT EXISTS (SELECT 1 FROM endpoints e WHERE"
        " e.scan_id = t.scan_id AND e.target = t.name AND e.status IN ('failed', 'partial'))"
        ") ORDER BY t_order, e_order", [scan_id, scan_id])


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
    failures = unread(store, scan_id)
    for target in targets:
        target["clusters"] = [c for (t, _), c in by_cluster.items() if t == target["name"]]
    return {"scan": scan, "targets": targets, "failures": failures,
            "totals": {"hosts": sum(c["hosts"] for c in by_cluster.values()),
                       "vms": sum(c["vms"] for c in by_cluster.values())}}



# -- the audit report: what one scan says, for the morning mail and the metrics --------------------
RECONCILE_PREFIX = "reconcile-"  # findings comparing CloudStack's view with the hypervisors'
STORAGE_THRESHOLD = "pool.storage.capacity.disablethreshold"
_NAMED = {"host": "hosts", "vm": "vms", "storage": "storage", "network": "networks", "cluster": "clusters"}


@dataclass
class RuleFindings:
    """The findings of one rule (or one kind of reconciliation difference) in a scan, in scan order."""

    rule_id: str
    severity: str
    remediation: str | None
    reference: str | None
    findings: list[dict[str, Any]]

    @property
    def count(self) -> int:
        """How many objects the findings are about (a finding about several counts each)."""
        return sum(f.get("object_count") or 1 for f in self.findings)

    @property
    def grouped(self) -> bool:
        """Some finding is about several objects (listed in ``finding_objects``)."""
        return any((f.get("object_count") or 1) > 1 for f in self.findings)

    @property
    def kind(self) -> str:
        """A reconciliation difference's kind: its rule id without ``reconcile-``."""
        return self.rule_id.removeprefix(RECONCILE_PREFIX)


@dataclass
class Audit:
    """Everything the audit report shows about one scan (``audit``)."""

    scan: dict[str, Any]
    previous: int | None  # the completed scan before it, which drift compares with
    targets: list[dict[str, Any]]
    failures: list[dict[str, Any]]  # endpoints that were not read fully, with the reason
    estate: list[dict[str, Any]]  # per zone, target and cluster
    power_states: list[str]
    findings: dict[str, list[RuleFindings]]  # by severity, reconciliation differences left out
    reconciliation: list[RuleFindings]
    drift: ScanDiff | None
    host_vms: list[dict[str, Any]]
    storage: list[dict[str, Any]]
    threshold: Setting

    @property
    def figures(self) -> dict[str, int]:
        vms = sum(row["vms"] for row in self.estate)
        return {
            "targets": len(self.targets), "targets_failed": sum(t["status"] == "failed" for t in self.targets),
            "hosts": sum(row["hosts"] for row in self.estate),
            "endpoints_failed": sum(f["status"] == "failed" for f in self.failures),
            "vms": vms, "vms_running": sum(row["states"].get("running", 0) for row in self.estate),
            **{f"findings_{s}": sum(r.count for r in self.findings[s]) for s in SEVERITIES},
            "reconciliation": sum(r.count for r in self.reconciliation),
            "changes": len(self.drift.changes) if self.drift else 0,
            "storage_above": sum(s["above"] for s in self.storage),
        }


def audit(store: Store, scan_id: int, *, include_usage: bool = False) -> Audit:
    """The audit of one stored scan: coverage, estate, findings, reconciliation, drift and usage."""
    scan = store.scan(scan_id)
    previous = store.query("SELECT MAX(id) AS id FROM scans WHERE id < ? AND status IN ('ok', 'partial')",
                           [scan_id])[0]["id"]
    findings, reconciliation = _findings(store, scan_id)
    estate, states = _estate(store, scan_id)
    threshold = storage_threshold(store, scan_id)
    return Audit(
        scan=scan, previous=previous, targets=_coverage(store, scan_id),
        failures=unread(store, scan_id),
        estate=estate, power_states=states, findings=findings, reconciliation=reconciliation,
        drift=diff_scans(store, previous, scan_id, include_usage=include_usage) if previous else None,
        host_vms=_host_vms(store, scan_id), storage=_storage(store, scan_id, float(threshold.value)),
        threshold=threshold)


def _coverage(store: Store, scan_id: int) -> list[dict[str, Any]]:
    return store.query(
        "SELECT t.name, t.hypervisor, t.endpoint, t.status, t.error, t.duration_s, t.api_calls, "
        " (SELECT COUNT(*) FROM endpoints e WHERE e.scan_id = t.scan_id AND e.target = t.name) AS endpoints, "
        " (SELECT COUNT(*) FROM endpoints e WHERE e.scan_id = t.scan_id AND e.target = t.name "
        "  AND e.status = 'failed') AS endpoints_failed, "
        " (SELECT COUNT(*) FROM hosts h WHERE h.scan_id = t.scan_id AND h.target = t.name) AS hosts, "
        " (SELECT COUNT(*) FROM vms v WHERE v.scan_id = t.scan_id AND v.target = t.name) AS vms "
        "FROM targets t WHERE t.scan_id = ? ORDER BY t.rowid", [scan_id])


def _estate(store: Store, scan_id: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows per (zone, target, cluster): hosts, VMs by CloudStack role and by power state."""
    names = {(c["target"], c["key"]): c["name"] for c in store.query(
        "SELECT target, key, name FROM clusters WHERE scan_id = ?", [scan_id])}
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(target: str, cluster: str, hypervisor: str | None = None) -> dict[str, Any]:
        if (target, cluster) not in rows:
            rows[(target, cluster)] = {"zones": set(), "target": target, "hypervisor": hypervisor,
                                       "cluster_key": cluster, "cluster": names.get((target, cluster), cluster),
                                       "hosts": 0, "vms": 0, "roles": dict.fromkeys(ROLES, 0), "states": {}}
        return rows[(target, cluster)]

    for h in store.query("SELECT target, COALESCE(cluster_key, '') AS cluster, hypervisor, agent_zone, COUNT(*) AS n "
                         "FROM hosts WHERE scan_id = ? GROUP BY 1, 2, 3, 4 ORDER BY MIN(rowid)", [scan_id]):
        entry = row(h["target"], h["cluster"], h["hypervisor"])
        entry["hosts"] += h["n"]
        if h["agent_zone"]:
            entry["zones"].add(h["agent_zone"])
    states: set[str] = set()
    for v in store.query("SELECT target, COALESCE(cluster_key, '') AS cluster, cs_role, "
                         "COALESCE(power_state, 'unknown') AS state, COUNT(*) AS n FROM vms WHERE scan_id = ? "
                         "GROUP BY 1, 2, 3, 4", [scan_id]):
        entry = row(v["target"], v["cluster"])
        entry["vms"] += v["n"]
        entry["roles"][v["cs_role"] or "unmanaged"] = entry["roles"].get(v["cs_role"] or "unmanaged", 0) + v["n"]
        entry["states"][v["state"]] = entry["states"].get(v["state"], 0) + v["n"]
        states.add(v["state"])
    for entry in rows.values():
        entry["zone"] = ", ".join(sorted(entry.pop("zones")))
    order = {name: i for i, name in enumerate(t["name"] for t in store.query(
        "SELECT name FROM targets WHERE scan_id = ? ORDER BY rowid", [scan_id]))}
    estate = sorted(rows.values(),
                    key=lambda r: (not r["zone"], r["zone"], order.get(r["target"], len(order)), r["cluster"]))
    return estate, sorted(states, key=lambda s: (s != "running", s != "stopped", s))


def _findings(store: Store, scan_id: int) -> tuple[dict[str, list[RuleFindings]], list[RuleFindings]]:
    """Findings grouped by severity then rule (reconciliation differences apart), objects named."""
    names: dict[tuple[str, str, str], str] = {}
    for object_type, table in _NAMED.items():
        for r in store.query(f"SELECT target, key, name FROM {table} WHERE scan_id = ?", [scan_id]):
            names[(object_type, r["target"], r["key"])] = r["name"]
    groups: dict[tuple[str, str], RuleFindings] = {}
    for f in store.rows("findings", scan_id):
        f["object_name"] = f.get("object_name") or names.get((f["object_type"], f["target"], f["object_key"]))
        f["cluster_name"] = names.get(("cluster", f["target"], f["cluster"]), f["cluster"])
        group = groups.setdefault((f["severity"], f["rule_id"]), RuleFindings(
            f["rule_id"], f["severity"], f["remediation"], f["reference"], []))
        group.findings.append(f)
    by_severity: dict[str, list[RuleFindings]] = {s: [] for s in SEVERITIES}
    reconciliation = []
    for (severity, rule_id), group in sorted(groups.items(), key=lambda kv: (_rank(kv[0][0]), kv[0][1])):
        if rule_id.startswith(RECONCILE_PREFIX):
            reconciliation.append(group)
        else:
            by_severity.setdefault(severity, []).append(group)
    return by_severity, reconciliation


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _host_vms(store: Store, scan_id: int) -> list[dict[str, Any]]:
    return store.query(
        "SELECT h.target, h.name, COALESCE(c.name, h.cluster_key, '') AS cluster, COALESCE(v.n, 0) AS vms, "
        " COALESCE(v.running, 0) AS running FROM hosts h "
        "LEFT JOIN (SELECT target, host_key, COUNT(*) AS n, SUM(power_state = 'running') AS running FROM vms "
        "           WHERE scan_id = ? GROUP BY target, host_key) v ON v.target = h.target AND v.host_key = h.key "
        "LEFT JOIN clusters c ON c.scan_id = h.scan_id AND c.target = h.target AND c.key = h.cluster_key "
        "WHERE h.scan_id = ? ORDER BY h.rowid", [scan_id, scan_id])


def primary_storage(store: Store, scan_id: int) -> list[dict[str, Any]]:
    """Pools, SRs and datastores of a scan with a known size, ISO libraries and removable media left out, each with
    its ``used`` share as CloudStack counts it (``used_share``: the rule, the report and the metrics alike)."""
    pools = store.query("SELECT target, key, name, kind, shared, capacity_bytes, free_bytes, raw_json FROM storage "
                       "WHERE scan_id = ? AND capacity_bytes > 0 "
                       "AND (free_bytes IS NOT NULL OR json_extract(raw_json, '$.allocation') IS NOT NULL) "
                       "AND COALESCE(kind, '') NOT IN ('iso', 'removable') AND COALESCE(content, '') != 'iso' "
                       "ORDER BY rowid", [scan_id])
    for pool in pools:
        raw = pool.pop("raw_json")
        pool["used"] = used_share(pool["capacity_bytes"], pool["free_bytes"], json.loads(raw) if raw else None)
    return pools


def _storage(store: Store, scan_id: int, threshold: float) -> list[dict[str, Any]]:
    """Primary storage, fullest first, each with its used share and whether it is above the threshold."""
    pools = []
    for s in primary_storage(store, scan_id):
        used = s["used"] or 0.0  # known: a pool is listed with its free space or its allocation
        pools.append({**s, "used_bytes": round(used * s["capacity_bytes"]), "used": used,
                      "above": used >= threshold - 1e-9})  # CloudStack refuses at >= (as the rule)
    return sorted(pools, key=lambda s: -s["used"])


def storage_threshold(store: Store, scan_id: int) -> Setting:
    """CloudStack's pool.storage.capacity.disablethreshold for a scan, from ``InventoryView.setting``."""
    return _view(store, scan_id, store.scan(scan_id).get("cloudstack_version")).setting(STORAGE_THRESHOLD)


def _view(store: Store, scan_id: int, version: str | None) -> InventoryView:
    """The scan's view, for CloudStack's settings; a scan that names no release known here gets the newest."""
    try:
        release = releases.resolve(version)
    except ConfigError:
        known = releases.facts()["supported_versions"]
        release = releases.resolve(max(known, key=lambda v: tuple(int(p) for p in v.split("."))))
    return InventoryView(store, scan_id, release)
