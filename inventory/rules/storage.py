"""Primary storage: shared storage seen by every host of its cluster, and room left on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from inventory.model import Storage
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule


@rule("shared-storage-on-every-host", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/configuration.rst", "1085-1087", "4.18.0.0–4.22.0.1 (1049-1051 at 4.18.0.0)")],
      evidence=["storage.shared", "storage.kind", "host_storage.attached"],
      remediation="Attach (mount, activate) the primary storage on every host of the cluster.")
def shared_storage_on_every_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Shared primary storage is attached on every host of its cluster."""
    attached: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for a in view.host_storage:
        attached[(a.target, a.storage_key)][a.host_key] = bool(a.attached)
    shared: dict[str, list[Storage]] = defaultdict(list)  # by target
    for storage in view.storage:
        if _is_shared(storage, attached.get((storage.target, storage.key), {})):
            shared[storage.target].append(storage)
    for group in view.host_groups:
        keys = {h.key for h in group.hosts}
        for storage in shared.get(group.target, []):
            seen = attached.get((storage.target, storage.key), {})
            if not keys & set(seen):
                continue  # storage of another cluster
            for host in group.hosts:
                if not seen.get(host.key):
                    state = "not attached" if host.key in seen else "missing"
                    yield r.finding(storage, f"{storage.name} is {state} on {host.name}", observed=state,
                                    expected="attached on every host", cluster=group.key)


def _is_shared(storage: Storage, attached: dict[str, bool]) -> bool:
    """Said to be shared, or a kind that is shared when more than one host has it; never ISO or removable media."""
    if storage.kind in ("iso", "removable") or storage.content == "iso":
        return False
    return bool(storage.shared) or (storage.kind in ("vmfs", "nfs", "vsan", "vvol") and len(attached) > 1)


@rule("storage-capacity", hypervisors=ANY_KIND, basis="CODE",
      sources=[code("server/src/main/java/com/cloud/storage/StorageManagerImpl.java", "checkUsagedSpace", "4.18–4.22"),
               code("engine/components-api/src/main/java/com/cloud/capacity/CapacityManager.java",
                    "StorageCapacityDisableThreshold (pool.storage.capacity.disablethreshold, 0.85)", "4.18–4.22")],
      evidence=["storage.capacity_bytes", "storage.free_bytes"],
      remediation="Free or add space: above pool.storage.capacity.disablethreshold (default 0.85) CloudStack stops "
                  "allocating volumes on the pool.")
def storage_capacity(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Primary storage is below CloudStack's disable threshold (85 % used)."""
    for storage in view.storage:
        if storage.kind in ("iso", "removable") or not storage.capacity_bytes or storage.free_bytes is None:
            continue
        used = 1 - storage.free_bytes / storage.capacity_bytes
        if used > 0.85:
            yield r.finding(storage, f"{storage.name} is {used:.0%} full", observed=f"{used:.1%}", expected="≤ 85%")
