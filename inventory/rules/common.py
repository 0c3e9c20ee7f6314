"""Helpers the rules of several subjects share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from inventory.model import Cluster, Host, JsonDict, Network, Storage, Vm
from inventory.rulebook import Finding, Rule


def raw_of(record: Host | Vm | Cluster | Storage | Network) -> JsonDict:
    """The record's source data (``raw_json``), empty when it has none. Its values are what a hypervisor sent:
    read them with ``raw_text`` / ``raw_int``, which give None for anything of another type."""
    return record.raw_json or {}


def raw_text(record: Host | Vm | Cluster | Storage | Network, key: str) -> str | None:
    value = raw_of(record).get(key)
    return value if isinstance(value, str) else None


def raw_int(record: Host | Vm | Cluster | Storage | Network, key: str) -> int | None:
    value = raw_of(record).get(key)
    return value if type(value) is int else None


def version_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in (text or "").split(".") if p.isdigit())


def odd_ones_out(r: Rule, hosts: Sequence[Host], column: str, cluster: str) -> Iterator[Finding]:
    """Hosts whose ``column`` differs from the value most of their cluster mates have (unknown values aside),
    reported under ``cluster``."""
    values = Counter(getattr(h, column) for h in hosts if getattr(h, column) is not None)
    if len(values) < 2:
        return
    common = values.most_common(1)[0][0]
    for host in hosts:
        value = getattr(host, column)
        if value is not None and value != common:
            shown = value if len(str(value)) < 60 else flag_delta(value, common)
            yield r.finding(host, f"{host.name}: {column} differs from its cluster mates", observed=shown,
                            expected=common if len(str(common)) < 60 else "the cluster's common set",
                            cluster=cluster)


def flag_delta(mine: str, common: str) -> str:
    a, b = set(mine.split()), set(common.split())
    return f"missing {' '.join(sorted(b - a)) or '-'}; extra {' '.join(sorted(a - b)) or '-'}"
