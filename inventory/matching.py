"""What CloudStack believes, matched with what the hypervisors run: built once per scan, in one pass each way.

VMs are matched by instance name — a KVM domain's name, a XenServer VM's name_label, on VMware the
``cloud.vm.internal.name`` custom attribute and else the VM's name (VMs marked ``cloud.vm.worker`` are
CloudStack's helpers and skipped). Hosts are matched by the management address CloudStack records, then
by any address of the host's NICs, then by name; CloudStack clusters through their hosts. Only what was
scanned is judged: a CloudStack cluster is *scanned* when at least one of its hosts matched a scanned
host, and a host no target read is *not covered*, never missing.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from inventory import registry
from inventory.model import CloudStackCluster, CloudStackHost, CloudStackStoragePool, CloudStackVm, Host, Storage, Vm
from inventory.view import InventoryView

STOPPED_STATES = frozenset({"Stopped", "Destroyed", "Expunging", "Error"})
# CloudStack's work in progress: a job works on the VM, and CloudStack's own power-state sync postpones its report;
# a starting VM has its host before its volumes are prepared, a migrating one the destination while it runs on the
# source (rules/reconciliation.py PENDING); only Running is settled
IN_TRANSITION = frozenset({"Starting", "Stopping", "Migrating"})
HYPERVISOR_RUNNING = frozenset({"running", "paused"})
INTERNAL_NAME = "cloud.vm.internal.name"
WORKER = "cloud.vm.worker"
_EXTENSION = re.compile(r"\.(qcow2|raw|img|vhd|vhdx|vmdk|iso)$", re.IGNORECASE)

HostRef = tuple[str, str]  # (target, key)


def _short_name(name: str) -> str | None:
    """A host name's first label (kvm01 of kvm01.dc1.example); none for an IP address."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        return name.lower().split(".")[0] or None


def instance_name_of(vm: Vm) -> str:
    """The name CloudStack knows the VM by on its hypervisor."""
    raw = vm.raw_json or {}
    return str(raw.get(INTERNAL_NAME) or vm.name)


def is_worker(vm: Vm) -> bool:
    """A VMware helper VM of CloudStack's (``cloud.vm.worker = true``): the collector gives it the role ``worker``."""
    return vm.cs_role == "worker" or str((vm.raw_json or {}).get(WORKER, "")).lower() == "true"


def volume_stem(path: str | None) -> str:
    """A disk's file or VDI as CloudStack's volume ``path`` names it: ``/mnt/x/abc.qcow2`` → ``abc``,
    ``[ds] i-2-10-VM/ROOT-10.vmdk`` → ``ROOT-10``, a VDI UUID as it is."""
    if not path:
        return ""
    name = path.rsplit("]", 1)[-1].strip().rsplit("/", 1)[-1]
    return _EXTENSION.sub("", name)


@dataclass
class Matching:
    """The two sides of one scan, matched (see the module's docstring)."""

    view: InventoryView
    host_of_cs: dict[HostRef, Host] = field(default_factory=dict)          # CloudStack host → scanned host
    cs_of_host: dict[HostRef, CloudStackHost] = field(default_factory=dict)  # scanned host → CloudStack host

    def __post_init__(self) -> None:
        by_address: dict[str, list[Host]] = defaultdict(list)
        by_name: dict[str, list[Host]] = defaultdict(list)
        by_short: dict[str, list[Host]] = defaultdict(list)
        for host in self.view.hosts:
            if host.address:
                by_address[host.address.lower()].append(host)
            by_name[host.name.lower()].append(host)
            if short := _short_name(host.name):
                by_short[short].append(host)
        for nic in self.view.host_nics:
            owner = self.view.host_by_key.get((nic.target, nic.host_key))
            for ip in [nic.ip, *(a.split("/")[0] for a in (nic.ip_addresses or "").split(",") if a)]:
                if ip and owner is not None and owner not in by_address[ip.lower()]:
                    by_address[ip.lower()].append(owner)
        for cs in self.view.cloudstack_hosts:
            # the address, else the name, else the short name (kvm01 of kvm01.dc1.example, never an IP's first
            # number) — each only when it names one scanned machine (a host listed twice is two rows of one UUID):
            # two is not a match but a guess, not compared
            short = _short_name(cs.name)
            found = by_address.get((cs.address or "").lower()) or by_name.get(cs.name.lower()) or \
                ((by_short if short == cs.name.lower() else by_name).get(short) if short else None)
            if found and len({(h.target, h.uuid or h.key) for h in found}) == 1:  # one machine, maybe two rows
                host = found[0]
                self.host_of_cs[(cs.target, cs.key)] = host
                self.cs_of_host.setdefault((host.target, host.key), cs)

    # -- CloudStack's side, indexed ------------------------------------------------------------------
    @cached_property
    def cs_cluster_by_key(self) -> dict[HostRef, CloudStackCluster]:
        return {(c.target, c.key): c for c in self.view.cloudstack_clusters}

    @cached_property
    def cs_host_by_key(self) -> dict[HostRef, CloudStackHost]:
        return {(h.target, h.key): h for h in self.view.cloudstack_hosts}

    @cached_property
    def cs_hosts_by_cluster(self) -> dict[HostRef, list[CloudStackHost]]:
        found: dict[HostRef, list[CloudStackHost]] = defaultdict(list)
        for host in self.view.cloudstack_hosts:
            found[(host.target, host.cluster_key or "")].append(host)
        return found

    @cached_property
    def scanned_cs_clusters(self) -> set[HostRef]:
        """CloudStack clusters with at least one host a target read."""
        return {(h.target, h.cluster_key or "") for h in self.view.cloudstack_hosts if (h.target, h.key) in self.host_of_cs}

    @cached_property
    def managed_hv_clusters(self) -> dict[HostRef, HostRef]:
        """Scanned clusters (target, cluster key or the target) holding a host CloudStack lists → that CS cluster."""
        found: dict[HostRef, HostRef] = {}
        for (target, key), cs in self.cs_of_host.items():
            host = self.view.host_by_key[(target, key)]
            found.setdefault((target, host.cluster_key or target), (cs.target, cs.cluster_key or ""))
        return found

    def cs_cluster_of_host(self, host: Host) -> HostRef | None:
        """The CloudStack cluster a scanned host belongs to: its own CloudStack host's, else its cluster mates'."""
        cs = self.cs_of_host.get((host.target, host.key))
        if cs is not None:
            return cs.target, cs.cluster_key or ""
        return self.managed_hv_clusters.get((host.target, host.cluster_key or host.target))

    @cached_property
    def cs_vm_by_name(self) -> dict[tuple[str, str], CloudStackVm]:
        """CloudStack's VMs by (CloudStack target, instance name): two clouds in one scan repeat names."""
        found: dict[tuple[str, str], CloudStackVm] = {}
        for vm in self.view.cloudstack_vms:
            for name in {vm.instance_name, vm.name if vm.role != "user" else None}:
                if name:
                    found.setdefault((vm.target, name.lower()), vm)
        return found

    @cached_property
    def targets_of_cloud(self) -> dict[str, set[str]]:
        """The hypervisor targets each CloudStack target's hosts were matched to."""
        found: dict[str, set[str]] = defaultdict(set)
        for (cloud, _), host in self.host_of_cs.items():
            found[cloud].add(host.target)
        return found

    @cached_property
    def hv_vms_by_name(self) -> dict[str, list[Vm]]:
        """Scanned VMs by instance name (templates and VMware worker VMs left out)."""
        found: dict[str, list[Vm]] = defaultdict(list)
        for vm in self.view.vms:
            if not vm.is_template and not is_worker(vm):
                found[instance_name_of(vm).lower()].append(vm)
        return found

    def hv_vms_of(self, vm: CloudStackVm) -> list[Vm]:
        """The scanned VMs a CloudStack VM is, by instance name; when the name is on several targets, those on the
        targets its own CloudStack's hosts are on (two clouds in one scan repeat names; one cloud over two targets
        keeps a second copy in view), else those on the target of the host CloudStack records, else those of its
        hypervisor type."""
        found = self.hv_vms_by_name.get((vm.instance_name or vm.name).lower(), [])
        if len({v.target for v in found}) < 2:
            return found
        if mine := self.targets_of_cloud.get(vm.target):
            return [v for v in found if v.target in mine]
        host = self.host_of_cs.get((vm.target, vm.host_key or ""))
        if host is not None:
            return [v for v in found if v.target == host.target]
        kinds = {v.target: self.view.kind_of_target(v.target) for v in found}
        return [v for v in found if (vm.hypervisor or "").lower() == cloudstack_type_of(kinds[v.target] or "").lower()]

    def host_of_vm(self, vm: Vm) -> Host | None:
        return self.view.host_by_key.get((vm.target, vm.host_key or ""))

    def zone_cluster(self, ref: HostRef | None) -> str:
        """``zone / cluster`` as CloudStack names them, for grouping a difference; ``ref`` is (any target, the
        CloudStack cluster's key)."""
        cluster = (self.cs_cluster_by_key.get(ref) or next(
            (c for (_, key), c in self.cs_cluster_by_key.items() if key == ref[1]), None)) if ref else None
        if cluster is None:
            return ""
        return f"{cluster.zone_name or cluster.zone_key or '?'} / {cluster.name}"

    # -- storage ----------------------------------------------------------------------------------------
    @cached_property
    def storage_of_pool(self) -> dict[HostRef, dict[str, list[Storage]]]:
        """Each CloudStack pool's storage in each scanned target: by the pool's UUID (KVM names its libvirt pool,
        XenServer its SR, VMware its NFS datastore after it), by server and path, else by name."""
        by_word: dict[str, list[Storage]] = defaultdict(list)
        for storage in self.view.storage:
            for word in {storage.key, storage.name, (storage.source or "").rstrip("/")}:
                if word:
                    by_word[word.lower()].append(storage)
        found: dict[HostRef, dict[str, list[Storage]]] = {}
        for pool in self.view.cloudstack_storage_pools:
            words = [pool.key, pool.key.replace("-", ""), f"{pool.address}:{(pool.path or '').rstrip('/')}", pool.name]
            per_target: dict[str, list[Storage]] = defaultdict(list)
            for word in words:
                for storage in by_word.get(word.lower(), []):
                    if storage not in per_target[storage.target]:
                        per_target[storage.target].append(storage)
                if per_target:
                    break
            found[(pool.target, pool.key)] = dict(per_target)
        return found

    @cached_property
    def pool_of_storage(self) -> dict[HostRef, CloudStackStoragePool]:
        pools = {(p.target, p.key): p for p in self.view.cloudstack_storage_pools}
        found: dict[HostRef, CloudStackStoragePool] = {}
        for ref, per_target in self.storage_of_pool.items():
            for storages in per_target.values():
                for storage in storages:
                    found.setdefault((storage.target, storage.key), pools[ref])
        return found

    def hosts_of_pool(self, pool: CloudStackStoragePool) -> list[Host]:
        """The scanned hosts that should have a CloudStack pool: its cluster's, or for a zone-wide pool those of
        the zone's scanned clusters of its hypervisor."""
        return [self.host_of_cs[(h.target, h.key)] for ref in self._clusters_of_pool(pool) or []
                for h in self.cs_hosts_by_cluster.get(ref, []) if (h.target, h.key) in self.host_of_cs]

    def pool_fully_scanned(self, pool: CloudStackStoragePool) -> bool:
        """Whether every host CloudStack may run a VM of the pool's on was read (a host-local pool: the host that
        lists it was): else a disk on it may belong to a VM no target read."""
        if pool.scope == "HOST":
            return True
        clusters = self._clusters_of_pool(pool)
        return clusters is not None and all(
            (h.target, h.key) in self.host_of_cs for ref in clusters for h in self.cs_hosts_by_cluster.get(ref, []))

    def _clusters_of_pool(self, pool: CloudStackStoragePool) -> list[HostRef] | None:
        """The CloudStack clusters whose hosts use the pool: its own, or the zone's of its hypervisor (zone-wide)."""
        if pool.scope == "CLUSTER" and pool.cluster_key:
            return [(pool.target, pool.cluster_key)]
        if pool.scope == "ZONE":
            return [(c.target, c.key) for c in self.view.cloudstack_clusters
                    if c.target == pool.target and c.zone_key == pool.zone_key
                    and (not pool.hypervisor or (c.hypervisor or "").lower() == pool.hypervisor.lower())]
        return None


def cloudstack_type_of(kind: str) -> str:
    return registry.cloudstack_name(kind)
