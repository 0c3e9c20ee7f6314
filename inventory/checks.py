"""The check engine: documented rules over a stored scan, producing findings with evidence.

A rule is a function decorated with ``@rule``; its docstring's first line is the requirement
shown in reports, and the decorator carries the rest of its catalogue entry. Rules read an
``InventoryView`` of one scan and yield ``Finding``s. The catalogue lives in ``inventory.rules``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from inventory.errors import ConfigError
from inventory.releases import Release, resolve
from inventory.store import Store

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: str
    object_type: str
    object_key: str
    target: str
    message: str
    observed: str | None = None
    expected: str | None = None
    remediation: str | None = None
    reference: str | None = None
    cluster: str | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    hypervisors: frozenset[str]
    requirement: str
    remediation: str
    reference: str
    basis: str
    since: str | None
    fn: Callable[[InventoryView, Rule], Iterable[Finding]]

    @property
    def documentation(self) -> str:
        return (self.fn.__doc__ or "").strip()

    def applies_to(self, release: Release) -> bool:
        return self.since is None or release.at_least(self.since)

    def finding(self, obj_type: str, key: str, target: str, message: str, *, observed: Any = None,
                expected: Any = None, severity: str | None = None, cluster: str | None = None) -> Finding:
        return Finding(self.id, severity or self.severity, obj_type, key, target, message,
                       None if observed is None else str(observed), None if expected is None else str(expected),
                       self.remediation, self.reference, cluster)


RULES: dict[str, Rule] = {}


def rule(rule_id: str, *, severity: str, hypervisors: Iterable[str], remediation: str, reference: str,
         basis: str, since: str | None = None) -> Callable[[Callable[..., Iterable[Finding]]], Callable[..., Any]]:
    def register(fn: Callable[..., Iterable[Finding]]) -> Callable[..., Iterable[Finding]]:
        requirement = (fn.__doc__ or "").strip().splitlines()[0]
        RULES[rule_id] = Rule(rule_id, severity, frozenset(hypervisors), requirement, remediation, reference,
                              basis, since, fn)
        return fn
    return register


@dataclass
class InventoryView:
    """One scan's rows, indexed the ways rules ask for them."""

    store: Store
    scan_id: int
    release: Release
    traffic_labels: Mapping[str, str] = field(default_factory=dict)

    def _rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.store.rows(table, self.scan_id))

    @cached_property
    def targets(self) -> list[dict[str, Any]]:
        return self._rows("targets")

    @cached_property
    def clusters(self) -> list[dict[str, Any]]:
        return self._rows("clusters")

    @cached_property
    def hosts(self) -> list[dict[str, Any]]:
        return self._rows("hosts")

    @cached_property
    def vms(self) -> list[dict[str, Any]]:
        return self._rows("vms")

    @cached_property
    def vm_disks(self) -> list[dict[str, Any]]:
        return self._rows("vm_disks")

    @cached_property
    def vm_nics(self) -> list[dict[str, Any]]:
        return self._rows("vm_nics")

    @cached_property
    def networks(self) -> list[dict[str, Any]]:
        return self._rows("networks")

    @cached_property
    def host_nics(self) -> list[dict[str, Any]]:
        return self._rows("host_nics")

    @cached_property
    def storage(self) -> list[dict[str, Any]]:
        return self._rows("storage")

    @cached_property
    def host_storage(self) -> list[dict[str, Any]]:
        return self._rows("host_storage")

    @cached_property
    def endpoints(self) -> list[dict[str, Any]]:
        return self._rows("endpoints")

    def hosts_of(self, hypervisor: str) -> list[dict[str, Any]]:
        return [h for h in self.hosts if h["hypervisor"] == hypervisor]

    def cluster_groups(self, hypervisor: str) -> dict[tuple[str, str], list[dict[str, Any]]]:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for host in self.hosts_of(hypervisor):
            groups[(host["target"], host["cluster_key"] or host["target"])].append(host)
        return dict(groups)

    @cached_property
    def nics_by_host(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        index: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for nic in self.host_nics:
            index[(nic["target"], nic["host_key"])].append(nic)
        return index

    @cached_property
    def network_by_key(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(n["target"], n["key"]): n for n in self.networks}

    @cached_property
    def host_by_key(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(h["target"], h["key"]): h for h in self.hosts}


def select_rules(only: Sequence[str] | None = None, skip: Sequence[str] | None = None) -> list[Rule]:
    import inventory.rules  # noqa: F401  (registers the catalogue)

    for name in [*(only or ()), *(skip or ())]:
        if name not in RULES:
            raise ConfigError(f"no rule {name!r}", hint="`cs-inventory rules` lists them")
    return [r for r in RULES.values() if (not only or r.id in only) and r.id not in (skip or ())]


def run_checks(store: Store, scan_id: int, cloudstack_version: str | None, *,
               traffic_labels: Mapping[str, str] | None = None, only: Sequence[str] | None = None,
               skip: Sequence[str] | None = None) -> list[Finding]:
    """Run the selected rules on one scan; store the findings (replacing earlier ones); return them."""
    release = resolve(cloudstack_version)
    view = InventoryView(store, scan_id, release, traffic_labels or {})
    present = {t["hypervisor"] for t in view.targets}
    findings: list[Finding] = []
    for chosen in select_rules(only, skip):
        if chosen.hypervisors & present and chosen.applies_to(release):
            findings.extend(chosen.fn(view, chosen))
    findings.sort(key=lambda f: (f.target, f.cluster or "", SEVERITIES.index(f.severity), f.rule_id, f.object_key))
    store.write_findings(scan_id, [f.as_row() for f in findings])
    return findings


def exit_code_for(findings: Sequence[Finding], fail_on: str) -> int:
    """1 when any finding is at or above ``fail_on`` (error, warning, info; never = always 0)."""
    if fail_on == "never":
        return 0
    if fail_on not in SEVERITIES:
        raise ConfigError(f"--fail-on {fail_on!r}", hint="use error, warning, info or never")
    worst = SEVERITIES.index(fail_on)
    return 1 if any(SEVERITIES.index(f.severity) <= worst for f in findings) else 0


def by_target_and_cluster(findings: Sequence[Finding]) -> Iterator[tuple[str, str, list[Finding]]]:
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        groups[(finding.target, finding.cluster or "")].append(finding)
    for (target, cluster), items in groups.items():
        yield target, cluster, items
