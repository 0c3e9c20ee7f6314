"""One stored scan, indexed the ways rules ask for it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from inventory.releases import Release
from inventory.store import Store


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
