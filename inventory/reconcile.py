"""``cs-inventory reconcile``: every difference between what CloudStack believes and what the hypervisors run.

Runs the catalogue's ``reconcile-*`` rules on a stored scan (read-only: nothing is written) and says what
could not be compared: a CloudStack target that failed, CloudStack clusters no target covered, hypervisor
targets or hosts that failed, scanned clusters CloudStack does not list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from inventory.errors import ConfigError, StoreError
from inventory.matching import Matching
from inventory.releases import Release, facts, resolve
from inventory.rulebook import SEVERITIES, InventoryView, Rule
from inventory.rules import RULES
from inventory.rules.reconciliation import cloudstack_side, matching_of
from inventory.store import Store

PREFIX = "reconcile-"
COLUMNS = ("difference", "severity", "zone_cluster", "object_type", "object_key", "target", "message",
           "hypervisor_side", "cloudstack_side")


@dataclass
class Reconciliation:
    scan_id: int
    cloudstack_targets: list[dict[str, Any]]
    differences: list[dict[str, Any]] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when a difference is an error (like ``check``), else 0."""
        return 1 if any(d["severity"] == "error" for d in self.differences) else 0

    def groups(self) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
        """Differences by kind (rule), then by zone / cluster, in that order."""
        seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for difference in self.differences:
            seen.setdefault((difference["difference"], difference["zone_cluster"]), []).append(difference)
        for (kind, where), items in seen.items():
            yield kind, where, items

    def to_dict(self) -> dict[str, Any]:
        return {"format": "cs-inventory.reconcile/1", "scan": self.scan_id, "cloudstack": self.cloudstack_targets,
                "not_compared": self.not_compared, "differences": self.differences,
                "rules": {r.id: r.requirement for r in reconcile_rules()}}


def reconcile_rules() -> list[Rule]:
    return [r for r in RULES.values() if r.id.startswith(PREFIX)]


def reconcile(store: Store, scan_id: int | None = None) -> Reconciliation:
    """The differences of one scan (latest by default), grouped as the command shows them."""
    resolved = store.resolve_scan(scan_id)
    view = InventoryView(store, resolved, _release(store, resolved))
    targets = [{"name": t.name, "endpoint": t.endpoint, "status": t.status, "error": t.error,
                "cloudstack_version": (t.detail or {}).get("cloudstack_version")} for t in view.cloudstack_targets]
    if not targets:
        raise StoreError(f"scan {resolved} read no CloudStack API target: there is nothing to reconcile with",
                         hint="add a [[cloudstack_api]] table to the config (docs/collectors.md) and scan again")
    result = Reconciliation(resolved, targets)
    for target in view.cloudstack_targets:
        if target.status != "ok":
            result.not_compared.append(f"CloudStack target {target.name} failed: {target.error}")
    match = matching_of(view)
    if match is None:
        return result
    result.not_compared += _not_compared(view, match)
    order = {r.id: i for i, r in enumerate(reconcile_rules())}
    for chosen in reconcile_rules():
        for finding in chosen.findings(view):
            cluster = (finding.target, finding.cluster or "")
            where = match.zone_cluster(cluster) or _hv_cluster(view, finding.target, finding.cluster)
            result.differences.append({
                "difference": finding.rule_id, "severity": finding.severity, "zone_cluster": where,
                "object_type": finding.object_type, "object_key": finding.object_key, "target": finding.target,
                "message": finding.message, "hypervisor_side": finding.observed,
                "cloudstack_side": cloudstack_side(finding.rule_id, finding.expected)})
    result.differences.sort(key=lambda d: (order[d["difference"]], d["zone_cluster"], SEVERITIES.index(d["severity"]),
                                           d["message"]))
    return result


def _release(store: Store, scan_id: int) -> Release:
    """The scan's release if it names one we know, else the newest known: reconciliation does not depend on it."""
    try:
        return resolve(store.scan(scan_id).get("cloudstack_version"))
    except ConfigError:
        return resolve(sorted(facts()["supported_versions"])[-1])


def _hv_cluster(view: InventoryView, target: str, key: str | None) -> str:
    names = {(c.target, c.key): c.name for c in view.clusters}
    return f"{target} / {names.get((target, key or ''), key or '-')}" if key else target


def _not_compared(view: InventoryView, match: Matching) -> list[str]:
    lines = []
    for cluster in view.cloudstack_clusters:
        if (cluster.target, cluster.key) not in match.scanned_cs_clusters:
            lines.append(f"CloudStack cluster {match.zone_cluster((cluster.target, cluster.key))} "
                         f"({cluster.hypervisor}): no host of it was scanned")
    for target in view.targets:
        if target.hypervisor != "cloudstack_api" and target.status == "failed":
            lines.append(f"target {target.name} ({target.hypervisor}) failed: {target.error}")
    for endpoint in view.endpoints:
        kind = view.kind_of_target(endpoint.target)
        whole_target_failed = view.target_by_name[endpoint.target].status == "failed"
        if endpoint.status == "failed" and kind != "cloudstack_api" and not whole_target_failed:
            lines.append(f"host {endpoint.endpoint} of {endpoint.target} was not read: {endpoint.error}")
    managed = set(match.managed_hv_clusters)
    for group in view.host_groups:
        if (group.target, group.key) not in managed:
            lines.append(f"{group.target} / {group.key} ({group.kind}): not a cluster CloudStack lists")
    return lines
