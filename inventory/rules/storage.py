"""Primary storage: shared storage seen by every host of its cluster, and room left on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from inventory.model import Storage
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule


@rule("shared-storage-on-every-host", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/configuration.rst", "1085-1087", "4.18.0.0–4.22.0.1 (1049-1051 at 4.18.0.0–4.18.1.1, "
                                                                  "1058-1060 at 4.18.2.0–4.18.2.5, 1049-1051 at "
                                                                  "4.19.0.0–4.19.0.2, 1058-1060 at 4.19.1.0–4.19.1.3, "
                                                                  "1070-1072 at 4.19.2.0–4.19.3.0, 1065-1067 at 4.20.0.0, "
                                                                  "1080-1082 at 4.20.1.0–4.20.2.0, 1092-1094 at 4.20.3.0, "
                                                                  "1082-1084 at 4.21.0.0)")],
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


STORAGE_MANAGER = "server/src/main/java/com/cloud/storage/StorageManagerImpl.java"
CAPACITY_KEYS = "engine/components-api/src/main/java/com/cloud/capacity/CapacityManager.java"
LIBVIRT_STORAGE_ADAPTOR = "plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/storage/LibvirtStorageAdaptor.java"


def used_share(capacity: int | None, free: int | None, raw: dict[str, Any] | None) -> float | None:
    """How full a pool is as CloudStack counts it: on a KVM (libvirt) pool its allocation, as CloudStack's agent
    reports it (on a filesystem, capacity − available would also count the blocks reserved for root); elsewhere
    capacity − free. None when it cannot be told. The rule and the report's storage use this one count."""
    if not capacity:
        return None
    allocation = (raw or {}).get("allocation")
    if isinstance(allocation, int) and not isinstance(allocation, bool):  # a libvirt pool
        return allocation / capacity
    return None if free is None else 1 - free / capacity


@rule("storage-capacity", hypervisors=ANY_KIND, basis="CODE",
      sources=[code(STORAGE_MANAGER, "checkUsagedSpace (used/total >= threshold: no new volume)", "4.18–4.22"),
               code(CAPACITY_KEYS, "StorageCapacityDisableThreshold (pool.storage.capacity.disablethreshold, 0.85)",
                    "4.18–4.22 (zone scope to 4.19, pool scope after)"),
               code(LIBVIRT_STORAGE_ADAPTOR, "getStoragePool (KVM: used = the libvirt pool's allocation)",
                    "4.18–4.22")],
      evidence=["storage.capacity_bytes", "storage.free_bytes", "storage.raw_json.allocation",
                "setting pool.storage.capacity.disablethreshold"],
      remediation="Free or add space: at pool.storage.capacity.disablethreshold (default 0.85) CloudStack stops "
                  "allocating volumes on the pool.")
def storage_capacity(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Primary storage is used below CloudStack's disable threshold (pool.storage.capacity.disablethreshold).

    Used is what CloudStack counts: on a KVM (libvirt) pool the pool's allocation, as CloudStack's agent
    reports it (on a filesystem, capacity − available would also count the blocks reserved for root);
    elsewhere capacity − free.
    """
    setting = view.setting("pool.storage.capacity.disablethreshold")
    threshold = float(setting.value)
    for storage in view.storage:
        if storage.kind in ("iso", "removable"):
            continue
        used = used_share(storage.capacity_bytes, storage.free_bytes, storage.raw_json)
        if used is None:
            continue
        if used >= threshold - 1e-9:  # CloudStack refuses at >= (float noise aside)
            yield r.finding(storage, f"{storage.name} is {used:.0%} used, at or above {setting.name} "
                            f"{setting.value} ({setting.source})", observed=f"{used:.1%}",
                            expected=f"< {threshold:.0%}")


# Pool types whose capacity CloudStack multiplies by storage.overprovisioning.factor (Storage.StoragePoolType's
# overProvisioning flag), by what the scan sees: NFS, local directories and EXT SRs, RBD, VMFS, PreSetup
# (vSAN, vVols, XenServer HBA SRs), and SharedMountPoint from the release in SHARED_MOUNT_POINT_SINCE. Pools of
# other kinds count at their capacity; kinds CloudStack's type of which cannot be told are not checked.
OVERPROVISIONED = {"nfs", "rbd", "vmfs", "vsan", "vvol"}
NOT_OVERPROVISIONED = {"iscsi", "lvm", "gluster", "cifs"}
# apache/cloudstack#8481 set SharedMountPoint's overProvisioning flag; the release notes list it in 4.19.1.0
# (releasenotes/changes.rst:682-683 at the 4.19.1.0 tag)
SHARED_MOUNT_POINT_SINCE = "4.19.1.0"
XEN_OVERPROVISIONED = {"nfs": True, "ext": True, "lvmohba": True, "lvm": False, "lvmoiscsi": False, "smb": False,
                       "cifs": False}


@rule("storage-allocated-capacity", hypervisors=ANY_KIND, basis="CODE",
      sources=[code(STORAGE_MANAGER, "checkPoolforSpace ((allocated + asking) / (capacity × factor) > threshold: "
                    "no new volume)", "4.18–4.22"),
               code(CAPACITY_KEYS, "StorageAllocatedCapacityDisableThreshold (0.85), StorageOverprovisioningFactor (2)",
                    "4.18–4.22"),
               code("api/src/main/java/com/cloud/storage/Storage.java", "StoragePoolType (overProvisioning)",
                    "4.18–4.22 (SharedMountPoint from 4.19.1.0)"),
               doc("releasenotes/changes.rst", "682-683", "4.19.1.0 (#8481: SharedMountPoint overprovisions)")],
      evidence=["vm_disks.capacity_bytes", "vm_disks.storage_key", "vms.cs_role", "storage.capacity_bytes",
                "storage.kind", "storage.raw_json.type", "setting pool.storage.allocated.capacity.disablethreshold",
                "setting storage.overprovisioning.factor"],
      remediation="Add primary storage or remove volumes: above pool.storage.allocated.capacity.disablethreshold of "
                  "the (overprovisioned) capacity CloudStack allocates no new volume on the pool.")
def storage_allocated_capacity(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Volumes allocated on primary storage stay below CloudStack's allocated-capacity disable threshold.

    CloudStack sums the sizes of its volumes and templates on the pool; the scan sums the virtual sizes of
    the disks of CloudStack's VMs it sees on the pool (detached volumes and templates aside), so the
    allocation it reports is a lower bound.
    """
    threshold_setting = view.setting("pool.storage.allocated.capacity.disablethreshold")
    factor_setting = view.setting("storage.overprovisioning.factor")
    threshold, factor = float(threshold_setting.value), float(factor_setting.value)
    managed = {(v.target, v.key) for v in view.vms if v.cs_role != "unmanaged"}
    allocated: dict[tuple[str, str], int] = defaultdict(int)
    for disk in view.vm_disks:
        if disk.storage_key and disk.capacity_bytes and disk.disk_type in ("disk", None) and \
                (disk.target, disk.vm_key) in managed:
            allocated[(disk.target, disk.storage_key)] += disk.capacity_bytes
    for storage in view.storage:
        used = allocated.get((storage.target, storage.key))
        overprovisioned = _overprovisioned(storage, view.release.at_least(SHARED_MOUNT_POINT_SINCE))
        if not used or not storage.capacity_bytes or overprovisioned is None:
            continue
        ceiling = storage.capacity_bytes * (factor if overprovisioned else 1)
        if used / ceiling > threshold:
            shown = f"× {factor_setting.name} {factor_setting.value} ({factor_setting.source})" if overprovisioned \
                else "(not overprovisioned)"
            yield r.finding(storage, f"{storage.name}: at least {used / 2**30:.0f} GiB allocated of "
                            f"{storage.capacity_bytes / 2**30:.0f} GiB {shown}, above {threshold_setting.name} "
                            f"{threshold_setting.value} ({threshold_setting.source})",
                            observed=f"{used / ceiling:.1%}", expected=f"≤ {threshold:.0%}")


def _overprovisioned(storage: Storage, shared_mount_point: bool) -> bool | None:
    """Whether CloudStack's pool type for this storage overprovisions; None when that cannot be told.

    ``shared_mount_point``: whether the release overprovisions SharedMountPoint pools.
    """
    xen_type = (storage.raw_json or {}).get("type")
    if isinstance(xen_type, str) and xen_type:  # a XenServer SR
        return XEN_OVERPROVISIONED.get(xen_type)
    if storage.kind in OVERPROVISIONED or (storage.kind == "local" and (storage.raw_json or {}).get("libvirt_type")
                                           == "dir"):
        return True
    if storage.kind == "sharedmountpoint":
        return shared_mount_point
    return False if storage.kind in NOT_OVERPROVISIONED else None


@rule("xen-tools-sr", hypervisors={"xenserver"}, basis="BP",
      sources=[doc("releasenotes/compat.rst", "63", "4.18.0.0–4.22.0.1 (59 at 4.18.0.0–4.18.2.5, 61 at 4.19.0.0–4.20.0.0, "
                                                    "64 at 4.20.1.0, 65 at 4.20.2.0–4.21.0.0)")],
      evidence=["hosts.product_name", "hosts.hypervisor_version", "storage.name"],
      remediation="Create a storage repository named \"XenServer Tools\" holding systemvm.iso on the pool.")
def xen_tools_sr(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer / Citrix Hypervisor 8.2 pools have a "XenServer Tools" SR (the release notes say it may be needed)."""
    named = {(s.target, s.name) for s in view.storage}
    for group in view.groups_of("xenserver"):
        hosts = [h for h in group.hosts if h.product_name in ("XenServer", "Citrix Hypervisor")
                 and (h.hypervisor_version or "").startswith("8.2")]
        if hosts and (group.target, "XenServer Tools") not in named:
            yield r.finding(group, f"pool {group.key}: {hosts[0].product_name} {hosts[0].hypervisor_version} and no "
                            "\"XenServer Tools\" SR", observed="no such SR", expected="an SR named XenServer Tools")
