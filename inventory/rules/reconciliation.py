"""Reconciliation: what CloudStack believes (a ``cloudstack_api`` target) against what the hypervisors run.

These rules judge only what the scan holds on both sides: with no CloudStack API target read in the scan
they find nothing (``unmanaged-vms`` is then the fallback), and a CloudStack cluster or host that no target
covers is "not compared" (``cs-inventory reconcile`` lists those), never missing. Matching is in
``inventory.matching``: VMs by instance name (on VMware the ``cloud.vm.internal.name`` attribute), hosts by
management address then name, clusters through their hosts. Each finding carries both sides' evidence:
``observed`` is what the hypervisor shows, ``expected`` what CloudStack records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from inventory.matching import (
    HYPERVISOR_RUNNING, IN_TRANSITION, STOPPED_STATES, Matching, cloudstack_type_of, instance_name_of, volume_stem,
)
from inventory.model import CloudStackHost, CloudStackVm, Host
from inventory.rulebook import Finding, InventoryView, Rule, Subject, code, outside, rule

KINDS = {"kvm", "xenserver", "vmware"}
SYNC = code("engine/orchestration/src/main/java/com/cloud/vm/VirtualMachinePowerStateSyncImpl.java",
            "processReport (a domain it does not know is only logged)", "4.18–4.22")
ISSUES = outside("apache/cloudstack issues #14206, #10406, #12920, #12411, #12922, #3664, #4290")
# a VM with a job working on it (matching.IN_TRANSITION): its power reports wait (main's VmPowerStateSyncManagerImpl;
# in 4.18–4.22 VirtualMachineManagerImpl's, by our reading)
PENDING = code("engine/orchestration/src/main/java/com/cloud/vm/VmPowerStateSyncManagerImpl.java",
               "handlePowerStateReport (pending work jobs postpone the power report)",
               "main; VirtualMachineManagerImpl in 4.18–4.22 (our reading)")
VOLUME_API = code("server/src/main/java/com/cloud/storage/VolumeApiServiceImpl.java", "attach / migrate", "4.18–4.22")
VOLUME_MIGRATE = code("server/src/main/java/com/cloud/storage/VolumeApiServiceImpl.java",
                      "migrateVolume (a volume changes pools through CloudStack, which records the new one)", "4.18–4.22")
HOST_RESPONSE = code("api/src/main/java/org/apache/cloudstack/api/response/HostResponse.java", "hypervisorversion",
                     "4.18–4.22")
CLUSTER_RESPONSE = code("api/src/main/java/org/apache/cloudstack/api/response/ClusterResponse.java", "hypervisortype",
                        "4.18–4.22")
EVIDENCE = ("cloudstack_vms", "cloudstack_hosts", "cloudstack_clusters", "cloudstack_storage_pools", "cloudstack_volumes",
            "vms", "hosts", "vm_disks", "storage", "host_storage")
# the images a leak is judged among: a libvirt pool's disk volumes, XAPI's user VDIs (system VDIs, suspend images,
# HA and metadata VDIs are XAPI's own; ISOs and snapshots are no volume's)
# Where a finding's `expected` is the rule's expectation rather than CloudStack's record ("listed by CloudStack"),
# what CloudStack shows — reconcile's and the report's CloudStack side — is this:
CLOUDSTACK_SHOWS = {"reconcile-vm-unknown-to-cloudstack": "not listed",
                            "reconcile-host-unknown-to-cloudstack": "not listed",
                            "reconcile-storage-leak": "no volume on the pool names it",
                            "reconcile-host-not-covered": "a host of the cluster"}


def cloudstack_side(rule_id: str, expected: str | None) -> str | None:
    """What CloudStack shows of a difference: its record, or that it has none."""
    return CLOUDSTACK_SHOWS.get(rule_id, expected)


IMAGE_KINDS_JUDGED = {"disk", "user"}
# storage where an image's base is not shown: libvirt lists an RBD clone without its parent (the template's image)
UNJUDGED_STORAGE = {"rbd"}


def matching_of(view: InventoryView) -> Matching | None:
    """The scan's two sides matched, built once per view; None when no CloudStack API target was read."""
    if not view.has_cloudstack_view:
        return None
    if "matching" not in view.derived:
        view.derived["matching"] = Matching(view)
    found = view.derived["matching"]
    assert isinstance(found, Matching)
    return found


def _cs_vm_subject(vm: CloudStackVm, cluster: str | None) -> Subject:
    return Subject("vm", vm.key, vm.target, cluster)


def _cs_host_subject(host: CloudStackHost) -> Subject:
    return Subject("host", host.key, host.target, host.cluster_key)


def _where(host: Host | None) -> str:
    return "no scanned host" if host is None else f"{host.name} ({host.target})"


@rule("reconcile-vm-unknown-to-cloudstack", hypervisors=KINDS, basis="DIFF", severity="error",
      remediation="A leftover with a CloudStack instance name may hold an IP and a volume CloudStack will hand out "
                  "again: destroy it (after checking nothing needs it), or import it (listUnmanagedInstances). "
                  "Any other VM does not belong on CloudStack's hosts.",
      sources=[SYNC, ISSUES], evidence=EVIDENCE)
def vm_unknown_to_cloudstack(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every VM on CloudStack's hosts is a VM CloudStack lists (error for a CloudStack instance name, else warning)."""
    match = matching_of(view)
    if match is None:
        return
    for name, vms in match.hv_vms_by_name.items():
        for vm in vms:
            host = match.host_of_vm(vm)
            cluster = match.cs_cluster_of_host(host) if host is not None else None
            if cluster is None:
                continue  # not on a host of a cluster CloudStack manages: not compared
            if (cluster[0], name) in match.cs_vm_by_name:
                continue  # listed by the CloudStack that manages its host (another cloud's of that name is not it)
            leftover = vm.cs_role != "unmanaged"
            yield r.finding(Subject("vm", vm.key, vm.target, cluster[1]),
                            f"{instance_name_of(vm)} ({vm.power_state}) on {_where(host)} is not in CloudStack"
                            + (" (a leftover CloudStack instance)" if leftover else ""),
                            observed=f"{vm.power_state} on {host.name if host else '?'}",
                            expected="listed by CloudStack", severity=None if leftover else "warning")


@rule("reconcile-vm-not-running", hypervisors=KINDS, basis="DIFF", severity="error",
      remediation="CloudStack counts it as running: start it from CloudStack (or stop it there, so HA and capacity "
                  "are right); find out why it went down (virsh destroy, power loss, a fenced host).",
      sources=[SYNC, ISSUES, PENDING], evidence=EVIDENCE)
def vm_not_running(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A VM CloudStack lists as Running runs on a scanned host; one in transition is not compared.

    Starting, Stopping and Migrating are CloudStack's work in progress (see ``IN_TRANSITION``)."""
    match = matching_of(view)
    if match is None:
        return
    for vm in view.cloudstack_vms:
        if vm.state != "Running" or not vm.host_key:
            continue
        cs_host = match.cs_host_by_key.get((vm.target, vm.host_key))
        if cs_host is None or (cs_host.target, cs_host.key) not in match.host_of_cs:
            continue  # its host was not scanned: not compared
        found = match.hv_vms_of(vm)
        if any(v.power_state in HYPERVISOR_RUNNING for v in found):
            continue  # running somewhere: wrong-host says where
        seen = ", ".join(f"{v.power_state} on {_where(match.host_of_vm(v))}" for v in found) or "absent"
        yield r.finding(_cs_vm_subject(vm, cs_host.cluster_key),
                        f"{vm.instance_name or vm.name} is {vm.state} on {cs_host.name} in CloudStack, but {seen}",
                        observed=seen, expected=f"{vm.state} on {cs_host.name}")


@rule("reconcile-vm-running-unexpectedly", hypervisors=KINDS, basis="DIFF", severity="error",
      remediation="CloudStack believes it is off (or gone): stop it on the hypervisor, or start it from CloudStack so "
                  "the two agree; a Destroyed/Expunging/Error VM still running holds its IP and volumes.",
      sources=[SYNC, ISSUES], evidence=EVIDENCE)
def vm_running_unexpectedly(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A VM CloudStack lists as Stopped, Destroyed, Expunging or Error is not running on a hypervisor."""
    match = matching_of(view)
    if match is None:
        return
    for vm in view.cloudstack_vms:
        if vm.state not in STOPPED_STATES:
            continue
        for found in match.hv_vms_of(vm):
            if found.power_state in HYPERVISOR_RUNNING:
                host = match.host_of_vm(found)
                cluster = match.cs_cluster_of_host(host) if host else None
                yield r.finding(_cs_vm_subject(vm, cluster[1] if cluster else None),
                                f"{vm.instance_name or vm.name} is {vm.state} in CloudStack but runs on {_where(host)}",
                                observed=f"{found.power_state} on {_where(host)}", expected=vm.state)


@rule("reconcile-vm-wrong-host", hypervisors=KINDS, basis="DIFF", severity="warning",
      remediation="CloudStack's record of the VM's host is stale (an out-of-band migration, DRS): migrate it back or "
                  "let the power-state sync catch up; capacity and HA decisions use CloudStack's record.",
      sources=[SYNC, outside("apache/cloudstack issue #3741"), PENDING], evidence=EVIDENCE)
def vm_wrong_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A running VM runs on the host CloudStack records for it (a migrating one's record is its destination)."""
    match = matching_of(view)
    if match is None:
        return
    for vm in view.cloudstack_vms:
        if not vm.host_key or vm.state in STOPPED_STATES or vm.state in IN_TRANSITION:
            continue
        running = [v for v in match.hv_vms_of(vm) if v.power_state in HYPERVISOR_RUNNING]
        for found in running:
            host = match.host_of_vm(found)
            cs = match.cs_of_host.get((host.target, host.key)) if host else None
            if cs is None or cs.key == vm.host_key:
                continue  # the right host, or one CloudStack does not list (reconcile-host-unknown-to-cloudstack)
            recorded = match.cs_host_by_key.get((vm.target, vm.host_key))
            yield r.finding(_cs_vm_subject(vm, recorded.cluster_key if recorded else None),
                            f"{vm.instance_name or vm.name} runs on {_where(host)}; CloudStack records "
                            f"{vm.host_name or vm.host_key}", observed=_where(host),
                            expected=vm.host_name or vm.host_key)


@rule("reconcile-host-not-covered", hypervisors=KINDS, basis="DIFF", severity="warning",
      remediation="Add the host to the target's configuration (or make it reachable): until then its VMs are not "
                  "compared.",
      sources=[outside("cs-inventory: only what was scanned is judged")], evidence=EVIDENCE)
def host_not_covered(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every CloudStack host of a scanned cluster was read by a target."""
    match = matching_of(view)
    if match is None:
        return
    failed = {e.endpoint.lower(): e for e in view.endpoints if e.status == "failed"}
    for host in view.cloudstack_hosts:
        ref = (host.target, host.cluster_key or "")
        if ref in match.scanned_cs_clusters and (host.target, host.key) not in match.host_of_cs:
            why = failed.get((host.address or "").lower()) or failed.get(host.name.lower())
            seen = f"read failed: {why.error}" if why else "in no target"
            yield r.finding(_cs_host_subject(host), f"{host.name} ({host.address}) of cluster "
                            f"{match.zone_cluster(ref)} is not covered: {seen}", observed=seen,
                            expected="read by a target")


@rule("reconcile-host-unknown-to-cloudstack", hypervisors=KINDS, basis="DIFF", severity="warning",
      remediation="Add the host to CloudStack (or take it out of the cluster): CloudStack neither places VMs on it nor "
                  "watches it, while it shares the cluster's storage and networks.",
      sources=[outside("cloudstack-documentation adminguide/hosts.rst")], evidence=EVIDENCE)
def host_unknown_to_cloudstack(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every scanned host of a cluster CloudStack manages is a host CloudStack lists."""
    match = matching_of(view)
    if match is None:
        return
    for host in view.hosts:
        if (host.target, host.key) in match.cs_of_host:
            continue
        cluster = match.managed_hv_clusters.get((host.target, host.cluster_key or host.target))
        if cluster is not None:
            yield r.finding(Subject("host", host.key, host.target, cluster[1]),
                            f"{host.name} ({host.address}) is in cluster {match.zone_cluster(cluster)} but CloudStack "
                            "does not list it", observed=host.address, expected="listed by CloudStack")


@rule("reconcile-pool-not-attached", hypervisors=KINDS, basis="DIFF", severity="error",
      remediation="Attach (mount, plug the PBD, mount the datastore) CloudStack's primary storage on the host, or put "
                  "the host in maintenance: CloudStack places volumes on the pool for every host of its scope.",
      sources=[outside("cloudstack-documentation installguide/configuration.rst \"Add Primary Storage\"")],
      evidence=EVIDENCE)
def pool_not_attached(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A CloudStack storage pool is attached on every scanned host of its cluster (or zone)."""
    match = matching_of(view)
    if match is None:
        return
    attached = {(a.target, a.host_key, a.storage_key) for a in view.host_storage if a.attached}
    for pool in view.cloudstack_storage_pools:
        storages = match.storage_of_pool.get((pool.target, pool.key), {})
        for host in match.hosts_of_pool(pool):
            mine = storages.get(host.target, [])
            if any((host.target, host.key, s.key) in attached for s in mine):
                continue
            seen = "not attached" if mine else "no such storage on the host"
            yield r.finding(Subject("storage", pool.key, pool.target, pool.cluster_key),
                            f"CloudStack pool {pool.name} on {host.name}: {seen}", observed=seen,
                            expected=f"{pool.name} attached ({pool.address or ''}:{pool.path or ''})".replace("(:)", ""))


@rule("reconcile-volume-missing", hypervisors=KINDS, basis="DIFF", severity="error",
      remediation="CloudStack's Ready volume is not among the disks of its VM on the hypervisor: find the disk (a "
                  "failed migration, a manual change) before CloudStack or a user relies on it.",
      sources=[VOLUME_API, outside("apache/cloudstack PR #5373")], evidence=EVIDENCE)
def volume_missing(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A Ready CloudStack volume attached to a scanned VM is one of that VM's disks."""
    match = matching_of(view)
    if match is None:
        return
    disks = defaultdict(set)
    for disk in view.vm_disks:
        if disk.disk_type in ("disk", None):
            disks[(disk.target, disk.vm_key)].add(volume_stem(disk.path).lower())
    vms = {(vm.target, vm.key): vm for vm in view.cloudstack_vms}
    for volume in view.cloudstack_volumes:
        vm = vms.get((volume.target, volume.vm_key or ""))
        if volume.state != "Ready" or vm is None or not volume.path:
            continue
        for found in match.hv_vms_of(vm):
            present = disks.get((found.target, found.key))
            if present and volume_stem(volume.path).lower() not in present:
                host = match.host_of_vm(found)
                cluster = match.cs_cluster_of_host(host) if host else None
                yield r.finding(Subject("volume", volume.key, volume.target, cluster[1] if cluster else None),
                                f"volume {volume.name} ({volume.path}) of {vm.instance_name or vm.name} is not among "
                                f"its disks on {_where(host)}", observed=", ".join(sorted(present)),
                                expected=f"{volume.path} on {volume.pool_name}")


@rule("reconcile-volume-wrong-pool", hypervisors=KINDS, basis="DIFF", severity="warning",
      remediation="CloudStack's record of the volume's pool is stale (storage DRS, a storage migration outside CloudStack "
                  "or one that failed half-way): move the disk back, or let CloudStack learn where it is (on VMware a "
                  "stop and start of the VM), before a snapshot, resize or migration of it fails.",
      sources=[VOLUME_MIGRATE, outside("apache/cloudstack issues #5091, #5484, #5558 (storage DRS and migrations left "
                                       "the recorded pool or path stale)")], evidence=EVIDENCE)
def volume_wrong_pool(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A Ready CloudStack volume's disk is on the pool CloudStack records for it.

    Judged where the disk's storage is one of CloudStack's pools and another than the recorded one (a disk on
    storage CloudStack does not list is not compared); a volume recorded on a VMware datastore cluster is not
    compared, since its datastores hold the disks.
    """
    match = matching_of(view)
    if match is None:
        return
    pools = {(p.target, p.key): p for p in view.cloudstack_storage_pools}
    disks = defaultdict(list)
    for disk in view.vm_disks:
        if disk.disk_type in ("disk", None) and disk.path:
            disks[(disk.target, disk.vm_key)].append(disk)
    vms = {(vm.target, vm.key): vm for vm in view.cloudstack_vms}
    for volume in view.cloudstack_volumes:
        vm = vms.get((volume.target, volume.vm_key or ""))
        recorded = pools.get((volume.target, volume.pool_key or ""))
        if volume.state != "Ready" or vm is None or not volume.path or recorded is None \
                or (recorded.pool_type or "").lower() == "datastorecluster":
            continue
        stem = volume_stem(volume.path).lower()
        for found in match.hv_vms_of(vm):
            for disk in disks.get((found.target, found.key), []):
                actual = match.pool_of_storage.get((disk.target, disk.storage_key or ""))
                if volume_stem(disk.path).lower() != stem or actual is None or actual.key == recorded.key:
                    continue
                host = match.host_of_vm(found)
                cluster = match.cs_cluster_of_host(host) if host else None
                yield r.finding(Subject("volume", volume.key, volume.target, cluster[1] if cluster else None),
                                f"volume {volume.name} ({volume.path}) of {vm.instance_name or vm.name} is on pool "
                                f"{actual.name}; CloudStack records {recorded.name}", observed=f"{disk.path} on "
                                f"{actual.name}", expected=f"on {recorded.name}")


@rule("reconcile-storage-leak", hypervisors=KINDS, basis="DIFF", severity="warning",
      remediation="A disk on CloudStack's primary storage that no CloudStack volume owns takes space CloudStack does "
                  "not account for. Before removing it, make sure it is no template's copy or snapshot CloudStack "
                  "keeps there (from 4.19 listStoragePoolObjects names the template or snapshot a file belongs to) "
                  "and that nothing uses it; or import it (importVolume, from 4.19.1).",
      sources=[outside("apache/cloudstack PR #5373; issues #8450, #14206"),
               code("plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/storage/KVMStorageProcessor.java",
                    "copyTemplateToPrimaryStorage (a template's copy on primary storage); cloneVolumeFromBaseTemplate "
                    "(a volume's file named by the volume's UUID, thin ones backed by the copy)", "4.20–4.22"),
               code("plugins/hypervisors/xenserver/src/main/java/com/cloud/hypervisor/xenserver/resource/"
                    "Xenserver625StorageProcessor.java", "copyTemplateToPrimaryStorage (the copy kept as a snapshot "
                    "VDI named \"Template …\"; root volumes are its clones)", "4.18–4.22")],
      evidence=[*EVIDENCE, "storage_images"])
def storage_leak(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every disk image on CloudStack's primary storage is a volume CloudStack lists on that pool.

    Judged: the disks of scanned VMs, and the images the storage lists that no scanned VM uses (a libvirt pool's
    volumes, an SR's VDIs, a datastore's VM disk files). A disk that is a volume of its own VM recorded on another
    pool is ``reconcile-volume-wrong-pool``, not a leak. An image another image is based on (a template's copy
    under its VMs' disks, a snapshot's base) is not judged, nor ISOs, snapshots (on XenServer a template's copy is
    a snapshot VDI), XAPI's own VDIs (suspend, HA, metadata), a VMware disk file in a folder that holds a VM's disk
    (its snapshot chain, a template's base), nor images on RBD, whose clones libvirt lists without their parent.
    An image attached to no scanned VM is judged only on a pool every host of whose scope (its cluster, or the
    zone's clusters of its hypervisor) was read: else it may be the disk of a VM no target read. Our inference, not
    CloudStack's: on KVM a template's copy that no disk is based on — unused, or only full clones of it
    (``create.full.clone``, sparse or fat provisioning) — is shown too, named by a UUID like a volume. From 4.19
    CloudStack's ``listStoragePoolObjects`` names the template or snapshot a pool's file belongs to, and from
    4.19.1 ``listVolumesForImport`` lists a KVM or VMware pool's files that are neither volume nor template copy.
    """
    match = matching_of(view)
    if match is None:
        return
    owned = defaultdict(set)
    of_vm = defaultdict(set)
    for volume in view.cloudstack_volumes:
        if volume.path:
            owned[(volume.target, volume.pool_key or "")].add(volume_stem(volume.path).lower())
            of_vm[(volume.target, volume.vm_key or "")].add(volume_stem(volume.path).lower())
    vms = {(vm.target, vm.key): vm for vm in view.vms}
    for disk in view.vm_disks:
        pool = match.pool_of_storage.get((disk.target, disk.storage_key or ""))
        if pool is None or disk.disk_type not in ("disk", None) or not disk.path:
            continue
        stem = volume_stem(disk.path).lower()
        vm = vms.get((disk.target, disk.vm_key))
        listed = match.cs_vm_by_name.get((pool.target, instance_name_of(vm).lower())) if vm else None
        if stem in owned.get((pool.target, pool.key), set()) or \
                (listed is not None and stem in of_vm.get((listed.target, listed.key), set())):
            continue
        host = match.host_of_vm(vm) if vm else None
        cluster = match.cs_cluster_of_host(host) if host else None
        yield r.finding(Subject("storage", pool.key, pool.target, cluster[1] if cluster else pool.cluster_key),
                        f"{disk.path} ({vm.name if vm else disk.vm_key}) on CloudStack pool {pool.name} is no "
                        "CloudStack volume", observed=disk.path, expected="a volume CloudStack lists on the pool")
    yield from _images_no_volume_owns(view, r, match, owned)


def _images_no_volume_owns(view: InventoryView, r: Rule, match: Matching,
                           owned: dict[tuple[str, str], set[str]]) -> Iterator[Finding]:
    """The storage's images that no scanned VM uses, no image is based on and no CloudStack volume names."""
    in_use = {(d.target, d.path) for d in view.vm_disks if d.path}  # as the storage names it (VMware: [ds] dir/f)
    based_on = {(i.target, i.storage_key, i.backing) for i in view.storage_images if i.backing}
    named = set().union(*owned.values()) if owned else set()
    fully_scanned = {(p.target, p.key): match.pool_fully_scanned(p) for p in view.cloudstack_storage_pools}
    storage_kinds = {(s.target, s.key): s.kind for s in view.storage}
    for image in view.storage_images:
        pool = match.pool_of_storage.get((image.target, image.storage_key))
        stem = volume_stem(image.path).lower()
        if pool is None or image.kind not in IMAGE_KINDS_JUDGED or (image.target, image.path) in in_use \
                or storage_kinds.get((image.target, image.storage_key)) in UNJUDGED_STORAGE \
                or (image.target, image.storage_key, image.path) in based_on or stem in named \
                or not fully_scanned[(pool.target, pool.key)]:
            continue
        size = f", {image.capacity_bytes / 2**30:.1f} GiB" if image.capacity_bytes else ""
        yield r.finding(Subject("storage", pool.key, pool.target, pool.cluster_key),
                        f"{image.name or image.path} on CloudStack pool {pool.name}{size}: no CloudStack volume "
                        "names it and no scanned VM uses it", observed=image.path,
                        expected="a volume CloudStack lists on the pool")


@rule("reconcile-cluster-drift", hypervisors=KINDS, basis="DIFF", severity="warning",
      remediation="CloudStack's record of the cluster is stale: a host was upgraded or reinstalled without "
                  "CloudStack noticing; reconnect the host in CloudStack (or fix the host).",
      sources=[HOST_RESPONSE, CLUSTER_RESPONSE], evidence=EVIDENCE)
def cluster_drift(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A scanned host's hypervisor type and version are what CloudStack records for it and its cluster."""
    match = matching_of(view)
    if match is None:
        return
    for (target, key), host in match.host_of_cs.items():
        cs = match.cs_host_by_key[(target, key)]
        cluster = match.cs_cluster_by_key.get((target, cs.cluster_key or ""))
        seen_type = cloudstack_type_of(host.hypervisor)
        recorded = (cluster.hypervisor if cluster else None) or cs.hypervisor
        if recorded and recorded.lower() != seen_type.lower():
            yield r.finding(_cs_host_subject(cs), f"{host.name} is {seen_type}; CloudStack records {recorded}",
                            observed=seen_type, expected=recorded)
        elif cs.hypervisor_version and host.hypervisor_version and not _same_version(cs.hypervisor_version,
                                                                                    host.hypervisor_version):
            yield r.finding(_cs_host_subject(cs), f"{host.name} runs {host.hypervisor_version}; CloudStack records "
                            f"{cs.hypervisor_version}", observed=host.hypervisor_version, expected=cs.hypervisor_version)


def _same_version(a: str, b: str) -> bool:
    """``8.2`` and ``8.2.1`` agree (one says less); ``8.2.1`` and ``8.3.0`` do not."""
    left, right = a.strip().split("."), b.strip().split(".")
    shortest = min(len(left), len(right))
    return left[:shortest] == right[:shortest]
