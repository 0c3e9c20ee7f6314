"""Running the checks: choose rules from the catalogue, run them on one stored scan, keep the findings.

Rules are written with ``inventory.rulebook`` and live in ``inventory.rules``; this module imports
both and nothing imports it back.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

from inventory.errors import ConfigError
from inventory.logs import event
from inventory.model import Host, TargetResult, Vm
from inventory.releases import resolve
from inventory.rulebook import BASES, SEVERITIES, Finding, InventoryView, Rule, Statement
from inventory.rules import RULES
from inventory.store import SameStatement, Store

__all__ = ["BASES", "GROUP_AT", "SEVERITIES", "CheckSettings", "Finding", "Rule", "by_target_and_cluster",
           "checked", "exit_code_for", "explain_rule", "findings_of", "group_findings", "run_checks",
           "select_rules", "store_findings"]


# Rules renamed when what they check changed; the old ids still select them (--rule, --skip-rule, --explain).
RENAMED = {"vmware-ha-drs": "vmware-cluster-ha"}


def select_rules(only: Sequence[str] | None = None, skip: Sequence[str] | None = None) -> list[Rule]:
    """The catalogue's rules, in catalogue order, narrowed to ``only`` and without ``skip`` (ids)."""
    only = [RENAMED.get(name, name) for name in only] if only else only
    skip = [RENAMED.get(name, name) for name in skip] if skip else skip
    for name in [*(only or ()), *(skip or ())]:
        if name not in RULES:
            raise ConfigError(f"no rule {name!r}", hint="`cs-inventory rules` lists them")
    return [r for r in RULES.values() if (not only or r.id in only) and r.id not in (skip or ())]


def explain_rule(rule_id: str) -> str:
    """What a rule checks, how sure it is (basis), where that is written down, and the evidence it reads."""
    (chosen,) = select_rules(only=[rule_id])
    return chosen.explain()


@dataclass(frozen=True)
class CheckSettings:
    """What ``scan`` checks a scan against as it stores it: the CloudStack release (else the one a
    ``cloudstack_api`` target of the scan reports, when cs-inventory knows it) and ``run_checks``' settings."""

    cloudstack_version: str | None = None
    traffic_labels: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)
    features: Sequence[str] = ()


def run_checks(store: Store, scan_id: int, cloudstack_version: str | None, *,
               traffic_labels: Mapping[str, str] | None = None, settings: Mapping[str, str] | None = None,
               features: Sequence[str] = (), only: Sequence[str] | None = None,
               skip: Sequence[str] | None = None, scanned: Sequence[TargetResult] | None = None,
               keep: bool = True) -> list[Finding]:
    """Run the selected rules on one scan; store the findings (replacing earlier ones), the same statement about
    many objects as one (``group_findings``), and the release they were checked against as the scan's; return them
    one per object, as the rules made them. ``keep=False``: store nothing (a look at some rules).

    ``settings`` are CloudStack global settings as the operator states them (else CloudStack's defaults);
    ``features`` the optional CloudStack features in use (``inventory.config.FEATURES``); ``scanned`` the target
    results ``scan`` just stored as this scan (``ScanResult.targets``): the rules read them rather than the
    database, which would give the same records back."""
    started, cpu = time.perf_counter(), time.thread_time()
    release = resolve(cloudstack_version)
    view = InventoryView(store, scan_id, release, traffic_labels or {}, settings or {}, frozenset(features), scanned)
    findings, grouped = checked(view, only, skip)
    if keep:
        _write(store, scan_id, grouped, release.asked)
    event("checks run", scan_id=scan_id, findings=len(findings), duration_s=round(time.perf_counter() - started, 3),
          cpu_s=round(time.thread_time() - cpu, 3))
    return findings


def findings_of(view: InventoryView, only: Sequence[str] | None = None,
                skip: Sequence[str] | None = None) -> list[Finding]:
    """The selected rules' findings on a view, one per object, in the order they are shown and stored."""
    return checked(view, only, skip)[0]


def store_findings(store: Store, scan_id: int, findings: Sequence[Finding]) -> None:
    """Replace a scan's stored findings with these (one per object, in order), grouped (``group_findings``): each a
    ``findings`` row, numbered from 1, and a ``finding_objects`` row for each object it is about."""
    _write(store, scan_id, group_findings(findings))


def _write(store: Store, scan_id: int, grouped: Sequence[Finding], release: str | None = None) -> None:
    """Grouped findings as rows, numbered from 1; a group's objects, which share all but the object, as one
    ``SameStatement``; ``release``, when given, recorded as the one the scan was checked against."""
    rows: list[tuple[Any, ...]] = []
    objects: list[tuple[Any, ...] | SameStatement] = []
    for number, f in enumerate(grouped, 1):
        rows.append((scan_id, f.target, f.cluster, f.rule_id, f.severity, f.object_type, f.object_key, f.message,
                     f.observed, f.expected, f.remediation, f.reference, f.basis, number, f.object_count,
                     f.object_name))
        if f.objects:  # one statement (group_findings): the same rule, severity, where, what of, expected and words
            first = f.objects[0]
            objects.append(SameStatement(number, first.target, first.cluster, first.rule_id, first.severity,
                                         first.object_type, first.expected,
                                         first.message[len(first.object_name or ""):], list(map(_OBJECT, f.objects))))
        else:
            objects.append((scan_id, number, *_OBJECT_COLUMNS(f)))
    store.write_findings(scan_id, rows, objects, release)


# findings by (target, cluster, severity rank, rule) and statement (None: none), each with its object key and its
# position as made
_Blocks = dict[tuple[tuple[str, str, int, str], tuple[Any, ...] | None], list[tuple[str, int, Finding]]]


def checked(view: InventoryView, only: Sequence[str] | None = None,
            skip: Sequence[str] | None = None) -> tuple[list[Finding], list[Finding]]:
    """The selected rules' findings on a view: one per object in the order they are shown (by target, cluster — none
    first —, severity, rule and object key, else as made), and grouped (``group_findings``) in the order they are
    stored.

    Exactly what ordering and grouping the findings one by one gives (``tests/test_checks_as_defined.py`` holds it
    to that), made in blocks: the findings of one (target, cluster, severity, rule) that state one thing (a rule's
    ``Statement``, or findings whose messages say the same of their objects) are one block, ordered by object key
    alone and grouped as one. A statement's findings are made in one step, its statement known rather than read
    back out of each message."""
    blocks: _Blocks = {}
    made = 0  # the position in the order the rules made them: what orders findings whose keys are equal
    for chosen in select_rules(only, skip):
        if not (chosen.runs_on(view.kinds) and chosen.applies_to(view.release)):
            continue
        for item in chosen.fn(view, chosen):
            if type(item) is Statement:
                made = _add_statement(blocks, item, made)
            else:
                _add_finding(blocks, item, made)  # type: ignore[arg-type]
                made += 1
    placed: dict[tuple[str, str, int, str], list[tuple[tuple[Any, ...] | None, list[tuple[str, int, Finding]]]]] = (
        defaultdict(list))
    for (prefix, statement), items in blocks.items():
        placed[prefix].append((statement, items))
    segments: list[_Segment] = []
    for prefix in sorted(placed):
        here = placed[prefix]
        if len(here) == 1:  # one block: made in order, so a stable sort by key orders it
            statement, items = here[0]
            items.sort(key=_FIRST)
            segments.append(_Segment(list(map(_THIRD, items)), statement))
            continue
        # several blocks under one (target, cluster, severity, rule): each finding by its key, then as made
        merged = sorted((key, position, finding, statement) for statement, items in here
                        for key, position, finding in items)
        segments += [_Segment([finding], statement) for _, _, finding, statement in merged]
    per_object = [finding for segment in segments for finding in segment.findings]
    return per_object, _grouped(segments)


class _Segment(NamedTuple):
    """Findings next to each other in the order shown, and what they state (None: each stands alone)."""

    findings: list[Finding]
    statement: tuple[Any, ...] | None


def _add_finding(blocks: _Blocks, finding: Finding, made: int) -> None:
    """A finding made one by one, into the block of its (target, cluster, severity, rule) and statement."""
    rule_id, severity, _, object_key, target, _, _, _, _, _, cluster, _, _, _ = finding  # one step, not ten lookups
    where = ((target, cluster or "", _RANK[severity], rule_id), _statement_key(finding))
    block = blocks.get(where)
    if block is None:
        block = blocks[where] = []
    block.append((object_key, made, finding))


def _add_statement(blocks: _Blocks, statement: Statement, made: int) -> int:
    """A statement's findings into blocks, one per (target, cluster, object type); an object with no name says
    nothing others share, and stands alone. Returns the position after them."""
    r, said, observe, expected = statement.rule, statement.said, statement.observed, statement.expected
    rule_id, severity, remediation, reference, basis = r.id, r.severity, r.remediation, r.reference, r.basis
    rank = _RANK[severity]
    new = tuple.__new__
    for about in statement.objects:
        kind, name = type(about), about.name
        if kind is not Vm and kind is not Host or not name:
            _add_finding(blocks, r.finding(about, f"{name}{said}", observed=None if observe is None else observe(about),
                                           expected=expected), made)
            made += 1
            continue
        object_type = "vm" if kind is Vm else "host"
        key, target, cluster = about.key, about.target, about.cluster_key
        value = None if observe is None else observe(about)
        where = ((target, cluster or "", rank, rule_id), (rule_id, severity, target, cluster, object_type, expected, said))
        block = blocks.get(where)
        if block is None:
            block = blocks[where] = []
        # the finding Rule.finding makes, without its checks: a Vm or Host, at the rule's severity
        block.append((key, made, new(Finding, (rule_id, severity, object_type, key, target, name + said,
                                               value if value is None or type(value) is str else str(value),
                                               expected, remediation, reference, cluster, basis, name, ()))))
        made += 1
    return made


def _grouped(segments: list[_Segment]) -> list[Finding]:
    """``group_findings`` of the findings of ``segments`` in order, a segment's statement known (or None)."""
    members: dict[tuple[Any, ...], list[Finding]] = defaultdict(list)
    for segment in segments:
        if segment.statement is not None:
            members[segment.statement] += segment.findings
    grouped: list[Finding] = []
    for segment in segments:
        group = members[segment.statement] if segment.statement is not None else None
        if group is None or len(group) < GROUP_AT:
            grouped += segment.findings
        elif group[0] is segment.findings[0]:
            grouped.append(_group(group))
    return grouped


# a finding's values in the order of finding_objects' columns after scan_id and finding: target, cluster, rule_id,
# severity, object_type, object_key, object_name, message, observed, expected
_OBJECT_COLUMNS = itemgetter(*(Finding._fields.index(name) for name in (
    "target", "cluster", "rule_id", "severity", "object_type", "object_key", "object_name", "message", "observed",
    "expected")))


_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}

# From this many VMs or hosts of one cluster that one statement holds for, they are one finding.
GROUP_AT = 3
SHOWN_NAMES = 5
_PLURAL = {"vm": "VMs", "host": "hosts"}


def group_findings(findings: Sequence[Finding]) -> list[Finding]:
    """The findings in the same order, each statement about ``GROUP_AT`` or more VMs or hosts of one cluster (or of
    a target's hosts and VMs in no cluster) made one finding: about the cluster (or the target), with the count and
    the first names in its message and each object's own finding in ``objects``. It stands where its first
    object's finding stood.

    The statement is what the finding says after its object's name: ``DC0_H1: ESXi 6.5.0 is no longer
    supported …`` says ``ESXi 6.5.0 is no longer supported …`` of DC0_H1. A finding whose message does not begin
    with its object's name makes no statement others can share, and stands alone.
    """
    members: dict[tuple[Any, ...], list[Finding]] = {}
    groups: list[list[Finding] | None] = []  # each finding's statement's findings (None: it makes none)
    for finding in findings:
        key = _statement_key(finding)
        if key is None:
            groups.append(None)
            continue
        group = members.get(key)
        if group is None:
            group = members[key] = []
        group.append(finding)
        groups.append(group)
    grouped: list[Finding] = []
    for finding, group in zip(findings, groups, strict=True):
        if group is None or len(group) < GROUP_AT:
            grouped.append(finding)
        elif group[0] is finding:
            grouped.append(_group(group))
    return grouped


def _statement_key(finding: Finding) -> tuple[Any, ...] | None:
    """What makes findings one statement: the rule (its remediation, reference and basis with it), the severity,
    where, what of, what is expected, and what is said after the object's name."""
    rule_id, severity, object_type, _, target, message, _, expected, _, _, cluster, _, name, _ = finding  # one step
    if not name or object_type not in _PLURAL or not message.startswith(name):
        return None
    rest = message[len(name):]
    if rest[:1] != " " and rest[:2] != ": ":
        return None
    return (rule_id, severity, target, cluster, object_type, expected, rest)


_FIRST, _THIRD = itemgetter(0), itemgetter(2)
_OBJECT = itemgetter(*(Finding._fields.index(name) for name in ("object_key", "object_name", "observed")))
_NAME, _OBSERVED = itemgetter(Finding._fields.index("object_name")), itemgetter(Finding._fields.index("observed"))


def _group(objects: list[Finding]) -> Finding:
    first = objects[0]
    said = first.message[len(first.object_name or ""):]  # what each of them says after its name
    names = sorted(map(_NAME, objects))  # each has its name: its statement follows it
    shown = ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES
                                              else "")
    statement = said[2:] if said.startswith(": ") else f"each{said}"
    observed = first.observed if len(set(map(_OBSERVED, objects))) == 1 else None
    kind, key = ("cluster", first.cluster) if first.cluster is not None else ("target", first.target)
    return Finding(first.rule_id, first.severity, kind, key, first.target,
                   f"{len(objects)} {_PLURAL[first.object_type]} ({shown}): {statement}", observed, first.expected,
                   first.remediation, first.reference, first.cluster, first.basis, None, tuple(objects))




def exit_code_for(findings: Sequence[Finding], fail_on: str) -> int:
    """1 when any finding is at or above ``fail_on`` (error, warning, info; never = always 0)."""
    if fail_on == "never":
        return 0
    if fail_on not in SEVERITIES:
        raise ConfigError(f"--fail-on {fail_on!r}", hint="use error, warning, info or never")
    worst = SEVERITIES.index(fail_on)
    return 1 if any(SEVERITIES.index(f.severity) <= worst for f in findings) else 0


def by_target_and_cluster(findings: Sequence[Finding]) -> Iterator[tuple[str, str, list[Finding]]]:
    """Findings grouped by (target, cluster), in the order they come."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        groups[(finding.target, finding.cluster or "")].append(finding)
    for (target, cluster), items in groups.items():
        yield target, cluster, items
