"""What a rule is written with: ``@rule``, the ``Rule`` it registers, the ``Finding``s it yields, and the
``InventoryView`` it reads.

A rule is a function decorated with ``@rule``; its docstring's first line is the requirement
shown in reports, and the decorator carries the rest of its catalogue entry: the hypervisor
kinds it is for — named, or ``ANY_KIND`` for a requirement that holds whatever the hypervisor.
Rules read an ``InventoryView`` of one scan and yield ``Finding``s. The rules live in
``inventory.rules``; ``inventory.checks`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Final, assert_never

from inventory import registry
from inventory.model import Cluster, Host, HostNic, Network, Storage, Vm
from inventory.releases import Release
from inventory.view import HostGroup, InventoryView, Target

__all__ = ["ANY_KIND", "RULES", "SEVERITIES", "About", "AnyKind", "Finding", "InventoryView", "Rule", "Subject", "rule",
           "subject_of"]

SEVERITIES = ("error", "warning", "info")


class AnyKind(Enum):
    """``hypervisors=ANY_KIND``: the rule is for every hypervisor kind, resolved when asked, not when written.

    Listed, it is for every hypervisor kind ``inventory.registry.hypervisor_kinds()`` knows (built-ins and
    plug-ins; not CloudStack's own API); run, it checks every hypervisor kind the scan holds — also one whose
    plug-in is no longer installed, whose rows are still there to check.
    """

    ANY = "any"


ANY_KIND: Final = AnyKind.ANY


@dataclass(frozen=True)
class Finding:
    """One requirement one object does not meet, with the evidence (a ``findings`` row but for scan_id)."""

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


@dataclass(frozen=True, slots=True)
class Subject:
    """What a finding is about: object type and key, its target, and the cluster reports group it under.

    Usually derived from a record (``subject_of``); spelled out for the few findings whose object is
    no one record, such as a VM known by its UUID across targets.
    """

    object_type: str
    key: str
    target: str
    cluster: str | None = None


About = Host | Vm | Cluster | HostGroup | Storage | Network | Target | HostNic | Subject


def subject_of(about: About) -> Subject:
    """A host, VM, storage or network is itself in its target (hosts and VMs in their cluster); a cluster,
    or a group of hosts checked as one, is its own cluster; a target is named by itself; a host NIC stands
    for its host."""
    match about:
        case Subject():
            return about
        case Host():
            return Subject("host", about.key, about.target, about.cluster_key)
        case Vm():
            return Subject("vm", about.key, about.target, about.cluster_key)
        case Cluster() | HostGroup():
            return Subject("cluster", about.key, about.target, about.key)
        case Storage():
            return Subject("storage", about.key, about.target)
        case Network():
            return Subject("network", about.key, about.target)
        case Target():
            return Subject("target", about.name, about.name)
        case HostNic():
            return Subject("host", about.host_key, about.target)
        case _:
            assert_never(about)


@dataclass(frozen=True)
class Rule:
    """A catalogue entry: the requirement, for which kinds and since which release, and the function checking it."""

    id: str
    severity: str
    kinds: frozenset[str] | AnyKind
    requirement: str
    remediation: str
    reference: str
    basis: str
    since: str | None
    fn: Callable[[InventoryView, Rule], Iterable[Finding]]

    @property
    def is_for_any_kind(self) -> bool:
        return isinstance(self.kinds, AnyKind)

    @property
    def hypervisors(self) -> frozenset[str]:
        """The kinds the rule is for: those it names, or every registered kind."""
        return frozenset(registry.hypervisor_kinds()) if isinstance(self.kinds, AnyKind) else self.kinds

    @property
    def hypervisors_shown(self) -> str:
        """``any``, or the kinds it names: how the catalogue shows them."""
        return ANY_KIND.value if isinstance(self.kinds, AnyKind) else ", ".join(sorted(self.kinds))

    def runs_on(self, kinds: Collection[str]) -> bool:
        """Whether the rule has anything to check in a scan holding these kinds."""
        if isinstance(self.kinds, AnyKind):
            return any(registry.is_hypervisor_kind(kind) for kind in kinds)
        return not self.kinds.isdisjoint(kinds)

    @property
    def documentation(self) -> str:
        return (self.fn.__doc__ or "").strip()

    def applies_to(self, release: Release) -> bool:
        return self.since is None or release.at_least(self.since)

    def finding(self, about: About, message: str, *, observed: Any = None, expected: Any = None,
                severity: str | None = None, cluster: str | None = None) -> Finding:
        """A finding of this rule about a record (see ``subject_of``), at the rule's severity unless
        ``severity`` says otherwise; ``cluster`` replaces the record's own (a host compared within a
        group of hosts is reported under the group)."""
        subject = subject_of(about)
        return Finding(self.id, severity or self.severity, subject.object_type, subject.key, subject.target, message,
                       None if observed is None else str(observed), None if expected is None else str(expected),
                       self.remediation, self.reference, subject.cluster if cluster is None else cluster)


RULES: dict[str, Rule] = {}


def rule(rule_id: str, *, severity: str, hypervisors: Iterable[str] | AnyKind, remediation: str, reference: str,
         basis: str, since: str | None = None) -> Callable[[Callable[..., Iterable[Finding]]], Callable[..., Any]]:
    """Register the decorated function in ``RULES`` as rule ``rule_id``, for the kinds ``hypervisors`` names
    (or ``ANY_KIND``)."""
    def register(fn: Callable[..., Iterable[Finding]]) -> Callable[..., Iterable[Finding]]:
        requirement = (fn.__doc__ or "").strip().splitlines()[0]
        kinds = hypervisors if isinstance(hypervisors, AnyKind) else frozenset(hypervisors)
        RULES[rule_id] = Rule(rule_id, severity, kinds, requirement, remediation, reference, basis, since, fn)
        return fn
    return register
