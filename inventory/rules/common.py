"""Helpers the rules of several subjects share."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from inventory.rulebook import Finding, Rule


def raw_of(row: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(row["raw_json"])) if row.get("raw_json") else {}


def version_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in (text or "").split(".") if p.isdigit())


def odd_ones_out(r: Rule, hosts: list[dict[str, Any]], column: str, target: str, cluster: str,
                 severity: str | None) -> Iterator[Finding]:
    values = Counter(h[column] for h in hosts if h[column] is not None)
    if len(values) < 2:
        return
    common = values.most_common(1)[0][0]
    for host in hosts:
        if host[column] is not None and host[column] != common:
            shown = host[column] if len(str(host[column])) < 60 else flag_delta(host[column], common)
            yield r.finding("host", host["key"], target, f"{host['name']}: {column} differs from its cluster mates",
                            observed=shown, expected=common if len(str(common)) < 60 else "the cluster's common set",
                            severity=severity, cluster=cluster)


def flag_delta(mine: str, common: str) -> str:
    a, b = set(mine.split()), set(common.split())
    return f"missing {' '.join(sorted(b - a)) or '-'}; extra {' '.join(sorted(a - b)) or '-'}"
