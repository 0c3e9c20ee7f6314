"""What a rule is written with: ``@rule``, the ``Rule`` it registers, the ``Finding``s it yields, and the
``InventoryView`` it reads.

A rule is a function decorated with ``@rule``; its docstring's first line is the requirement
shown in reports, and the decorator carries the rest of its catalogue entry: the hypervisor
kinds it is for — named, or ``ANY_KIND`` for a requirement that holds whatever the hypervisor.
Rules read an ``InventoryView`` of one scan and yield ``Finding``s (or a ``Statement``: one thing said of
many VMs or hosts). The rules live in ``inventory.rules``; ``inventory.checks`` runs them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Any, Final, NamedTuple, assert_never

from inventory import registry
from inventory.model import Cluster, Host, HostNic, Network, Storage, Vm
from inventory.releases import Release
from inventory.view import HostGroup, InventoryView, Target

__all__ = ["ANY_KIND", "BASES", "CODE_REPO", "DOCS_REPO", "FINDING_FIELDS", "RULES", "SEVERITIES", "About", "AnyKind",
           "Basis", "Finding", "Statement",
           "InventoryView", "Rule", "Source", "Subject", "code", "doc", "outside", "rule", "subject_of"]

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True, slots=True)
class Basis:
    """How sure a rule is: what its requirement rests on, and so the severity of its findings."""

    code: str
    severity: str
    meaning: str


# The four bases, in the order reports list them. A rule has exactly one: where a requirement has parts of
# different standing, each part is its own rule.
BASES: Final = {b.code: b for b in (
    Basis("CODE", "error", "enforced by CloudStack's code: it refuses the host, or fails at run time"),
    Basis("DOC", "warning", "a requirement written in CloudStack's documentation, not enforced by its code"),
    Basis("BP", "info", "a recommendation in CloudStack's documentation"),
    Basis("INF", "info", "cs-inventory's inference: no CloudStack text states it"),
    Basis("DIFF", "per rule", "CloudStack's own record and what the hypervisor runs disagree, both read in this scan; "
                              "the severity is what the difference risks"),
)}

DOCS_REPO: Final = "apache/cloudstack-documentation"
CODE_REPO: Final = "apache/cloudstack"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a requirement is written down: a file of CloudStack's documentation (``at`` = its lines at the newest
    tag named) or of its code (``at`` = the class and method), and the release tags it holds for.

    A documentation passage numbered otherwise at older tags says so in ``tags`` as "L at T" or "L at T1–T2";
    tests/test_citations.py checks every tag of the range against a mirror of the documentation.
    """

    repo: str
    path: str
    at: str
    tags: str

    def __str__(self) -> str:
        if not self.repo:
            return self.path
        where = f"{self.path}:{self.at}" if self.repo == DOCS_REPO else f"{self.path} {self.at}"
        return f"{self.repo.split('/')[1]} {where} [{self.tags}]"


def doc(path: str, lines: str, tags: str) -> Source:
    """A passage of apache/cloudstack-documentation: ``path`` under ``source/``, its ``lines`` at the newest of
    ``tags``."""
    return Source(DOCS_REPO, f"source/{path}", lines, tags)


def code(path: str, where: str, tags: str) -> Source:
    """A place in apache/cloudstack's code: the file, the class/method, and the releases whose code does it."""
    return Source(CODE_REPO, path, where, tags)


def outside(what: str) -> Source:
    """What an inference (basis INF) rests on when no CloudStack text says it: a standard, a vendor's fact."""
    return Source("", what, "", "")


class AnyKind(Enum):
    """``hypervisors=ANY_KIND``: the rule is for every hypervisor kind, resolved when asked, not when written.

    Listed, it is for every hypervisor kind ``inventory.registry.hypervisor_kinds()`` knows (built-ins and
    plug-ins; not CloudStack's own API); run, it checks every hypervisor kind the scan holds — also one whose
    plug-in is no longer installed, whose rows are still there to check.
    """

    ANY = "any"


ANY_KIND: Final = AnyKind.ANY


FINDING_FIELDS: Final = ("rule_id", "severity", "object_type", "object_key", "target", "message", "observed",
                          "expected", "remediation", "reference", "cluster", "basis", "object_name")
_FIELD_COUNT: Final = len(FINDING_FIELDS)


class Finding(NamedTuple):
    """One requirement one object does not meet, with the evidence (a ``findings`` row but for scan_id and number).

    Grouped (``inventory.checks.group_findings``), the same statement about several VMs or hosts of one cluster: its
    ``objects`` are the findings about each of them, as the rule made them.

    Immutable, and a named tuple rather than a frozen dataclass: a scan of 10,000 VMs that are not CloudStack's
    makes 10,000 of them, and a frozen dataclass sets each field through ``object.__setattr__`` (0.85 µs a finding
    more, measured).
    """

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
    basis: str | None = None
    object_name: str | None = None
    objects: tuple[Finding, ...] = ()

    @property
    def object_count(self) -> int:
        return len(self.objects) or 1

    def as_row(self) -> dict[str, Any]:
        """The finding as a dict of its fields (a group adds ``object_count`` and its ``objects``)."""
        row = dict(zip(FINDING_FIELDS, self.values(), strict=True))
        if self.objects:
            row["object_count"] = len(self.objects)
            row["objects"] = [o.as_row() for o in self.objects]
        return row

    def values(self) -> tuple[Any, ...]:
        """The fields of ``FINDING_FIELDS``, in that order."""
        return self[:_FIELD_COUNT]


class Statement(NamedTuple):
    """One thing a rule says of many VMs or hosts (``Rule.statement``): the findings it stands for are each object's
    ``<name><said>``; ``findings()`` makes them."""

    rule: Rule
    objects: list[Vm | Host]
    said: str
    observed: Callable[[Any], Any] | None
    expected: str | None

    def findings(self) -> list[Finding]:
        """Each object's finding, as ``Rule.finding`` would make it, in the order of ``objects``."""
        r, said, observed, expected = self.rule, self.said, self.observed, self.expected
        made = []
        for about in self.objects:
            value = None if observed is None else observed(about)
            made.append(r.finding(about, f"{about.name}{said}", observed=value, expected=expected))
        return made


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
    name: str | None = None


About = Host | Vm | Cluster | HostGroup | Storage | Network | Target | HostNic | Subject


def subject_of(about: About) -> Subject:
    """A host, VM, storage or network is itself in its target (hosts and VMs in their cluster); a cluster,
    or a group of hosts checked as one, is its own cluster; a target is named by itself; a host NIC stands
    for its host."""
    match about:
        case Subject():
            return about
        case Host():
            return Subject("host", about.key, about.target, about.cluster_key, about.name)
        case Vm():
            return Subject("vm", about.key, about.target, about.cluster_key, about.name)
        case Cluster():
            return Subject("cluster", about.key, about.target, about.key, about.name)
        case HostGroup():
            return Subject("cluster", about.key, about.target, about.key)
        case Storage():
            return Subject("storage", about.key, about.target, None, about.name)
        case Network():
            return Subject("network", about.key, about.target, None, about.name)
        case Target():
            return Subject("target", about.name, about.name, None, about.name)
        case HostNic():
            return Subject("host", about.host_key, about.target)
        case _:
            assert_never(about)


@dataclass(frozen=True)
class Rule:
    """A catalogue entry: the requirement, for which kinds and since which release, how sure it is (its basis and
    sources), the evidence it reads, and the function checking it."""

    id: str
    kinds: frozenset[str] | AnyKind
    requirement: str
    remediation: str
    basis: str
    sources: tuple[Source, ...]
    evidence: tuple[str, ...]
    since: str | None
    fn: Callable[[InventoryView, Rule], Iterable[Finding | Statement]]
    declared_severity: str | None = None  # DIFF rules only: what the difference risks

    @cached_property
    def severity(self) -> str:
        """The basis decides it: CODE error, DOC warning, BP and INF info; a DIFF rule declares its own."""
        return self.declared_severity or BASES[self.basis].severity

    @cached_property
    def reference(self) -> str:
        """The sources, as one line (what a finding's ``reference`` holds)."""
        return "; ".join(map(str, self.sources))

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
        return inspect.cleandoc(self.fn.__doc__ or "")

    def applies_to(self, release: Release) -> bool:
        return self.since is None or release.at_least(self.since)

    def finding(self, about: About, message: str, *, observed: Any = None, expected: Any = None,
                cluster: str | None = None, severity: str | None = None) -> Finding:
        """A finding of this rule about a record (see ``subject_of``), at the severity its basis gives;
        ``cluster`` replaces the record's own (a host compared within a group of hosts is reported under
        the group). Only a DIFF rule may say a finding's ``severity`` (a difference risks more on one object
        than on another: a leftover CloudStack instance more than a stranger's VM)."""
        if severity is not None and self.basis != "DIFF":
            raise ValueError(f"rule {self.id}: the basis {self.basis} decides the severity")
        kind = type(about)
        if kind is Vm or kind is Host:  # most findings, when there are many: subject_of's answer, made directly
            object_type, key, target, own_cluster, name = (
                "vm" if kind is Vm else "host", about.key, about.target, about.cluster_key, about.name)  # type: ignore[union-attr]
        else:
            subject = subject_of(about)
            object_type, key, target, own_cluster, name = (subject.object_type, subject.key, subject.target,
                                                           subject.cluster, subject.name)
        return Finding(self.id, severity or self.severity, object_type, key, target, message,
                       None if observed is None else str(observed), None if expected is None else str(expected),
                       self.remediation, self.reference, own_cluster if cluster is None else cluster, self.basis, name)

    def statement(self, objects: Iterable[Vm | Host], said: str, *, observed: Callable[[Any], Any] | None = None,
                  expected: Any = None) -> Statement:
        """The same statement about many VMs or hosts, in one step: each one's finding says its name then ``said``
        (which begins with a space or ": "), ``observed`` of it (a function of the record: each its own) and
        ``expected``, at the rule's severity and in its own cluster. It is the findings the rule would yield one by
        one with ``finding``, in the order of ``objects`` — checked in bulk (``inventory.checks``): a scan of 10,000
        VMs no CloudStack manages makes one statement, not 10,000 findings to make, order and group one by one."""
        if not (said.startswith(" ") or said.startswith(": ")):
            raise ValueError(f"rule {self.id}: a statement follows the object's name after a space or ': '")
        return Statement(self, list(objects), said, observed, None if expected is None else str(expected))

    def findings(self, view: InventoryView) -> Iterator[Finding]:
        """The rule's findings on a view one by one, as it yields them (a statement as its objects' findings)."""
        for made in self.fn(view, self):
            if type(made) is Statement:
                yield from made.findings()
            else:
                yield made  # type: ignore[misc]

    def explain(self) -> str:
        """Everything the catalogue knows of the rule, as text: requirement, basis, sources, evidence, remedy."""
        basis = BASES[self.basis]
        lines = [f"{self.id}: {self.requirement}", "",
                 f"basis:       {basis.code} — {basis.meaning} (findings are {basis.severity})",
                 f"hypervisors: {self.hypervisors_shown}",
                 f"releases:    {'from ' + self.since if self.since else 'every release cs-inventory knows'}",
                 "sources:", *(f"  - {s}" for s in self.sources),
                 "evidence:", *(f"  - {e}" for e in self.evidence),
                 f"remediation: {self.remediation}"]
        details = self.documentation.split("\n", 1)[1].strip() if "\n" in self.documentation else ""
        return "\n".join(lines + (["", details] if details else []))


RULES: dict[str, Rule] = {}


def rule(rule_id: str, *, hypervisors: Iterable[str] | AnyKind, basis: str, sources: Iterable[Source],
         evidence: Iterable[str], remediation: str, since: str | None = None,
         severity: str | None = None) -> Callable[[Callable[..., Iterable[Finding | Statement]]], Callable[..., Any]]:
    """Register the decorated function in ``RULES`` as rule ``rule_id``, for the kinds ``hypervisors`` names
    (or ``ANY_KIND``), resting on ``basis`` (a key of ``BASES``) as ``sources`` write it down, reading the
    ``evidence`` fields (``table.column``, ``table.raw_json.key``, or ``setting <name>`` of CloudStack)."""
    if basis not in BASES:
        raise ValueError(f"rule {rule_id}: basis {basis!r} is not one of {', '.join(BASES)}")
    if (basis == "DIFF") != (severity in SEVERITIES):
        raise ValueError(f"rule {rule_id}: a DIFF rule declares its severity, any other rule takes its basis's")
    found = tuple(sources)
    if not found:
        raise ValueError(f"rule {rule_id}: a rule names where its requirement comes from")

    def register(fn: Callable[..., Iterable[Finding | Statement]]) -> Callable[..., Iterable[Finding | Statement]]:
        requirement = (fn.__doc__ or "").strip().splitlines()[0]
        kinds = hypervisors if isinstance(hypervisors, AnyKind) else frozenset(hypervisors)
        RULES[rule_id] = Rule(rule_id, kinds, requirement, remediation, basis, found, tuple(evidence), since, fn,
                              severity)
        return fn
    return register
