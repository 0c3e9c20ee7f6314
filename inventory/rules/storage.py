"""Primary storage: shared storage seen by every host of its cluster, and room left on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from inventory.rulebook import Finding, InventoryView, Rule, rule


@rule("shared-storage-on-every-host", severity="error", hypervisors={"kvm", "xenserver", "vmware"}, basis="DOC",
      remediation="Attach (mount, activate) the primary storage on every host of the cluster.",
      reference="cloudstack-documentation installguide/configuration.rst \"Add Primary Storage\", "
                "\"KVM Host Additional Requirements\"")
def shared_storage_on_every_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Shared primary storage is attached on every host of its cluster."""
    attached: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for a in view.host_storage:
        attached[(a["target"], a["storage_key"])][a["host_key"]] = bool(a["attached"])
    shared = {(s["target"], s["key"]): s for s in view.storage
              if (s["shared"] or (s["kind"] in ("vmfs", "nfs", "vsan", "vvol")
                                  and len(attached.get((s["target"], s["key"]), {})) > 1))
              and s["kind"] not in ("iso", "removable") and s["content"] != "iso"}
    for hypervisor in ("kvm", "xenserver", "vmware"):
        for (target, cluster), hosts in view.cluster_groups(hypervisor).items():
            keys = {h["key"] for h in hosts}
            for (s_target, s_key), storage in shared.items():
                seen = attached.get((s_target, s_key), {})
                if s_target != target or not keys & set(seen):
                    continue  # storage of another cluster
                for host in hosts:
                    if not seen.get(host["key"]):
                        state = "not attached" if host["key"] in seen else "missing"
                        yield r.finding("storage", s_key, target, f"{storage['name']} is {state} on {host['name']}",
                                        observed=state, expected="attached on every host", cluster=cluster)


@rule("storage-capacity", severity="warning", hypervisors={"kvm", "xenserver", "vmware"}, basis="CODE (setting default)",
      remediation="Free or add space: above pool.storage.capacity.disablethreshold (default 0.85) CloudStack stops "
                  "allocating volumes on the pool.",
      reference="apache/cloudstack CapacityManager.java StorageCapacityDisableThreshold "
                "(pool.storage.capacity.disablethreshold = 0.85)")
def storage_capacity(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Primary storage is below CloudStack's disable threshold (85 % used)."""
    for storage in view.storage:
        if storage["kind"] in ("iso", "removable") or not storage["capacity_bytes"] or storage["free_bytes"] is None:
            continue
        used = 1 - storage["free_bytes"] / storage["capacity_bytes"]
        if used > 0.85:
            yield r.finding("storage", storage["key"], storage["target"], f"{storage['name']} is {used:.0%} full",
                            observed=f"{used:.1%}", expected="≤ 85%")
