"""Running the checks: choose rules from the catalogue, run them on one stored scan, keep the findings.

Rules are written with ``inventory.rulebook`` and live in ``inventory.rules``; this module imports
both and nothing imports it back.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence

from inventory.errors import ConfigError
from inventory.logs import event
from inventory.releases import resolve
from inventory.rulebook import BASES, SEVERITIES, Finding, InventoryView, Rule
from inventory.rules import RULES
from inventory.store import Store

__all__ = ["BASES", "SEVERITIES", "Finding", "Rule", "by_target_and_cluster", "exit_code_for", "explain_rule",
           "run_checks", "select_rules"]


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


def run_checks(store: Store, scan_id: int, cloudstack_version: str | None, *,
               traffic_labels: Mapping[str, str] | None = None, settings: Mapping[str, str] | None = None,
               features: Sequence[str] = (), only: Sequence[str] | None = None,
               skip: Sequence[str] | None = None) -> list[Finding]:
    """Run the selected rules on one scan; store the findings (replacing earlier ones); return them.

    ``settings`` are CloudStack global settings as the operator states them (else CloudStack's defaults);
    ``features`` the optional CloudStack features in use (``inventory.config.FEATURES``)."""
    started = time.perf_counter()
    release = resolve(cloudstack_version)
    view = InventoryView(store, scan_id, release, traffic_labels or {}, settings or {}, frozenset(features))
    findings: list[Finding] = []
    for chosen in select_rules(only, skip):
        if chosen.runs_on(view.kinds) and chosen.applies_to(release):
            findings.extend(chosen.fn(view, chosen))
    findings.sort(key=lambda f: (f.target, f.cluster or "", SEVERITIES.index(f.severity), f.rule_id, f.object_key))
    store.write_findings(scan_id, [f.as_row() for f in findings])
    event("checks run", scan_id=scan_id, findings=len(findings), duration_s=round(time.perf_counter() - started, 3))
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
    """Findings grouped by (target, cluster), in the order they come."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for finding in findings:
        groups[(finding.target, finding.cluster or "")].append(finding)
    for (target, cluster), items in groups.items():
        yield target, cluster, items
