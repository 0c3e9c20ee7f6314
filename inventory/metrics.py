"""Prometheus metrics of the stored scans, in the text format node_exporter's textfile collector reads.

Every metric is a gauge named ``cs_inventory_…`` with its unit as a suffix (``_seconds``,
``_timestamp_seconds``, ``_bytes``, ``_ratio``); a state is a label with one series per possible value
(1 for the one that holds, 0 for the others), so an alert need not know which series existed before.
The inventory metrics describe one completed scan (the latest by default); ``cs_inventory_last_run_*``
describe the newest run whatever became of it, so a run that stored nothing still shows. Label values
(target, cluster and pool names) are escaped as the format requires.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from inventory.checks import select_rules
from inventory.errors import StoreError
from inventory.report import RECONCILE_PREFIX, STORAGE_THRESHOLD, primary_storage, storage_threshold
from inventory.store import Store

SCAN_STATES = ("ok", "partial", "failed")
TARGET_STATES = ("ok", "partial", "failed")
PREFIX = "cs_inventory_"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric: its name, help text and samples (labels → value)."""

    name: str
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)

    def add(self, value: float, **labels: str | None) -> None:
        key = tuple((k, v or "") for k, v in labels.items())
        self.samples[key] = self.samples.get(key, 0) + value

    def text(self) -> str:
        lines = [f"# HELP {PREFIX}{self.name} {_escape_help(self.help)}", f"# TYPE {PREFIX}{self.name} gauge"]
        for labels, value in sorted(self.samples.items()):
            body = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
            lines.append(f"{PREFIX}{self.name}{{{body}}} {_number(value)}" if body
                         else f"{PREFIX}{self.name} {_number(value)}")
        return "\n".join(lines)


def escape_label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _timestamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def metrics_text(store: Store, scan_id: int | None = None) -> str:
    """The metrics of one completed scan (latest by default) and of the newest run, as exposition text."""
    last_run = store.query("SELECT * FROM scans ORDER BY id DESC LIMIT 1")
    if not last_run:
        raise StoreError(f"{store.path} holds no scan yet", hint="run `cs-inventory scan` first")
    families = _last_run(last_run[0])
    described = store.resolve_scan(scan_id) if scan_id is not None else store.latest_scan_id()
    if described is not None:
        families += _scan(store, described) + _targets(store, described) + _estate(store, described)
        families += _findings(store, described) + _storage(store, described)
    return "\n".join(f.text() for f in families) + "\n"


def _enum(family: Family, states: Iterable[str], actual: str, **labels: str | None) -> Family:
    for state in dict.fromkeys([*states, actual]):
        family.add(1 if state == actual else 0, **labels, status=state)
    return family


def _last_run(run: Mapping[str, object]) -> list[Family]:
    time = Family("last_run_timestamp_seconds", "When the newest stored run (scan or import) finished, whatever its "
                                                "status (Unix time).")
    time.add(_timestamp(str(run["finished_at"] or run["started_at"])) or 0)
    status = _enum(Family("last_run_status", "Status of the newest stored run: 1 for its status (ok, partial, "
                                             "failed), 0 for the others."), SCAN_STATES, str(run["status"]))
    return [time, status]


def _scan(store: Store, scan_id: int) -> list[Family]:
    scan = store.scan(scan_id)
    started, finished = _timestamp(scan["started_at"]), _timestamp(scan["finished_at"])
    ident = Family("scan_id", "Id of the scan the inventory metrics describe (the latest completed by default).")
    ident.add(scan_id)
    time = Family("scan_timestamp_seconds", "When that scan finished (Unix time).")
    time.add(finished or started or 0)
    duration = Family("scan_duration_seconds", "How long that scan took, from the start of collection to the write.")
    duration.add(max(0.0, (finished or 0) - (started or 0)) if started and finished else 0)
    status = _enum(Family("scan_status", "Status of that scan: 1 for its status (ok, partial, failed), 0 for the "
                                         "others."), SCAN_STATES, scan["status"])
    return [ident, time, duration, status]


def _targets(store: Store, scan_id: int) -> list[Family]:
    status = Family("target_status", "Per configured target: 1 for its status in the scan (ok, partial: some hosts "
                                     "failed, failed), 0 for the others.")
    duration = Family("target_duration_seconds", "Wall time spent reading the target.")
    calls = Family("target_api_calls", "Remote calls made to read the target (libvirt, SSH, XenAPI or vSphere).")
    endpoints = Family("target_endpoints", "Hosts or API endpoints of the target by outcome (ok, partial, failed, "
                                           "redirected).")
    success = Family("target_last_success_timestamp_seconds", "When the target was last read, fully or in part "
                                                              "(Unix time), in any stored scan up to this one.")
    for t in store.query("SELECT name, hypervisor, status, duration_s, api_calls FROM targets WHERE scan_id = ?",
                         [scan_id]):
        labels = {"target": t["name"], "hypervisor": t["hypervisor"]}
        _enum(status, TARGET_STATES, t["status"], **labels)
        duration.add(t["duration_s"] or 0, **labels)
        calls.add(t["api_calls"] or 0, **labels)
        for state in TARGET_STATES:
            endpoints.add(0, **labels, status=state)
    for e in store.query("SELECT e.target, t.hypervisor, e.status, COUNT(*) AS n FROM endpoints e JOIN targets t "
                         "ON t.scan_id = e.scan_id AND t.name = e.target WHERE e.scan_id = ? GROUP BY 1, 2, 3",
                         [scan_id]):
        endpoints.add(e["n"], target=e["target"], hypervisor=e["hypervisor"], status=e["status"])
    for s in store.query("SELECT t.name, t.hypervisor, MAX(COALESCE(s.finished_at, s.started_at)) AS at "
                         "FROM targets t JOIN scans s ON s.id = t.scan_id WHERE t.scan_id <= ? "
                         "AND t.status IN ('ok', 'partial') AND t.name IN (SELECT name FROM targets WHERE scan_id = ?) "
                         "GROUP BY t.name, t.hypervisor", [scan_id, scan_id]):
        success.add(_timestamp(s["at"]) or 0, target=s["name"], hypervisor=s["hypervisor"])
    return [status, duration, calls, endpoints, success]


def _estate(store: Store, scan_id: int) -> list[Family]:
    names = {(c["target"], c["key"]): c["name"] for c in store.query(
        "SELECT target, key, name FROM clusters WHERE scan_id = ?", [scan_id])}
    hosts = Family("hosts", "Hosts per target, cluster and state (connected, maintenance, disconnected …).")
    for h in store.query("SELECT target, cluster_key, COALESCE(state, 'unknown') AS state, COUNT(*) AS n FROM hosts "
                         "WHERE scan_id = ? GROUP BY 1, 2, 3", [scan_id]):
        hosts.add(h["n"], target=h["target"], cluster=names.get((h["target"], h["cluster_key"]), h["cluster_key"]),
                  state=h["state"])
    vms = Family("vms", "VMs per target, cluster, CloudStack role (user, router, internal_lb, ssvm, cpvm, worker, "
                        "unmanaged) and power state (running, stopped …).")
    for v in store.query("SELECT target, cluster_key, COALESCE(cs_role, 'unmanaged') AS role, "
                         "COALESCE(power_state, 'unknown') AS state, COUNT(*) AS n FROM vms WHERE scan_id = ? "
                         "GROUP BY 1, 2, 3, 4", [scan_id]):
        vms.add(v["n"], target=v["target"], cluster=names.get((v["target"], v["cluster_key"]), v["cluster_key"]),
                role=v["role"], power_state=v["state"])
    return [hosts, vms]


def _findings(store: Store, scan_id: int) -> list[Family]:
    findings = Family("findings", "Findings of the CloudStack requirement checks per rule and severity, one per object "
                                  "found (0 for each rule at its severity when it found nothing).")
    differences = Family("reconciliation_differences", "Differences between CloudStack's view and the hypervisors' "
                                                       "per kind (reconcile-* findings): 0 for each kind when compared "
                                                       "and none found; no series when not compared (no CloudStack "
                                                       "API target read ok).")
    # compared: CloudStack's API was read in this scan (as ``InventoryView.has_cloudstack_view`` says it)
    compared = store.query("SELECT 1 FROM targets WHERE scan_id = ? AND hypervisor = 'cloudstack_api' AND status = 'ok' "
                           "LIMIT 1", [scan_id])
    for r in select_rules():
        if r.id.startswith(RECONCILE_PREFIX):  # reconciliation differences are their own family
            if compared:
                differences.add(0, kind=r.id.removeprefix(RECONCILE_PREFIX))
        else:
            findings.add(0, rule=r.id, severity=r.severity)
    kinds: dict[str, int] = defaultdict(int)
    for f in store.query("SELECT rule_id, severity, COUNT(*) AS n FROM finding_objects WHERE scan_id = ? "
                         "GROUP BY 1, 2", [scan_id]):
        if f["rule_id"].startswith(RECONCILE_PREFIX):
            kinds[f["rule_id"].removeprefix(RECONCILE_PREFIX)] += f["n"]
        else:
            findings.add(f["n"], rule=f["rule_id"], severity=f["severity"])
    for kind, count in kinds.items():
        differences.add(count, kind=kind)
    return [findings, differences]


def _storage(store: Store, scan_id: int) -> list[Family]:
    setting = storage_threshold(store, scan_id)
    threshold = Family("storage_disable_threshold_ratio", f"CloudStack's {STORAGE_THRESHOLD} ({setting.source}): "
                                                          "above this used share a pool gets no new volumes.")
    threshold.add(float(setting.value))
    capacity = Family("storage_capacity_bytes", "Capacity of each primary storage pool.")
    free = Family("storage_free_bytes", "Free space of each primary storage pool.")
    used = Family("storage_used_ratio", "How full each primary storage pool is as CloudStack counts it (a KVM "
                                        "pool's libvirt allocation; else capacity - free): at the disable threshold "
                                        "it gets no new volumes.")
    for s in primary_storage(store, scan_id):
        labels = {"target": s["target"], "storage": s["name"], "key": s["key"], "kind": s["kind"]}
        capacity.add(s["capacity_bytes"], **labels)
        if s["free_bytes"] is not None:
            free.add(s["free_bytes"], **labels)
        if s["used"] is not None:
            used.add(s["used"], **labels)
    return [threshold, capacity, free, used]

