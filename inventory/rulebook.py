"""What a rule is written with: ``@rule``, the ``Rule`` it registers, the ``Finding``s it yields, and the
``InventoryView`` it reads.

A rule is a function decorated with ``@rule``; its docstring's first line is the requirement
shown in reports, and the decorator carries the rest of its catalogue entry. Rules read an
``InventoryView`` of one scan and yield ``Finding``s. The rules live in ``inventory.rules``;
``inventory.checks`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from inventory.releases import Release
from inventory.view import InventoryView

__all__ = ["RULES", "SEVERITIES", "Finding", "InventoryView", "Rule", "rule"]

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
