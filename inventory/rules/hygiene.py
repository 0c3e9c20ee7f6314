"""Estate hygiene: only CloudStack's VMs on its hosts, and no MAC address or UUID used twice."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from operator import attrgetter

from inventory.model import Host, Vm
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, Statement, Subject, doc, outside, rule


@rule("unmanaged-vms", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/overview/_requirements.rst", "69-70", "4.18.0.0–4.22.0.1"),
               doc("installguide/hypervisor/kvm.rst", "67-68", "4.19.0.0–4.22.0.1 (\"These will be destroy by CloudStack\"; "
                                                               "69-70 at 4.19.0.0–4.20.1.0, 69-70 at 4.21.0.0)"),
               doc("installguide/hypervisor/xenserver.rst", "80-81", "4.18.0.0–4.22.0.1 (78-79 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/configuration.rst", "942", "4.19.0.0–4.22.0.1 (vSphere cluster; 908 at 4.19.0.0–4.19.0.2, "
                                                            "917 at 4.19.1.0–4.19.1.3, 929 at 4.19.2.0–4.19.3.0, 922 at "
                                                            "4.20.0.0, 937 at 4.20.1.0–4.20.2.0, 949 at 4.20.3.0, 939 at "
                                                            "4.21.0.0)")],
      evidence=["vms.cs_role", "vms.power_state", "vms.name"],
      remediation="Move running VMs CloudStack does not manage off its hosts (on KVM CloudStack destroys them), or "
                  "import them into CloudStack.")
def unmanaged_vms(view: InventoryView, r: Rule) -> Iterator[Statement]:
    """Hosts given to CloudStack run no VMs that are not CloudStack's.

    What is CloudStack's is read from the instance name (i-, r-, s-, v- …-VM): CloudStack's own naming,
    so a VM renamed by hand is counted as not CloudStack's. With CloudStack's own list in the scan,
    ``reconcile-vm-unknown-to-cloudstack`` is certain and this rule stands down.
    """
    if view.has_cloudstack_view:
        return
    # one statement about them all: an estate of strangers' VMs makes thousands
    yield r.statement((vm for vm in view.vms
                       if vm.cs_role == "unmanaged" and not vm.is_template and vm.power_state == "running"),
                      " is running and is not a CloudStack instance", observed=_NAME,
                      expected="only i-/r-/s-/v- instances running")


_NAME = attrgetter("name")


@rule("vmware-dedicated-cluster", hypervisors={"vmware"}, basis="BP",
      sources=[doc("installguide/hypervisor/vsphere.rst", "148-155", "4.18.0.0–4.22.0.1")],
      evidence=["vms.cs_role", "vms.cluster_key", "vms.is_template"],
      remediation="Keep CloudStack's vSphere clusters for CloudStack: move other VMs (and vCenter, the management "
                  "server) to a cluster of their own.")
def vmware_dedicated_cluster(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """vSphere clusters CloudStack uses hold no VMs but CloudStack's, running or not."""
    others: dict[tuple[str, str], list[str]] = defaultdict(list)
    for vm in view.vms:
        if vm.cs_role == "unmanaged" and not vm.is_template and vm.cluster_key:
            others[(vm.target, vm.cluster_key)].append(vm.name)
    for cluster in view.clusters_of("vmware"):
        names = others.get((cluster.target, cluster.key))
        if names:
            shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            yield r.finding(cluster, f"cluster {cluster.name} holds {len(names)} VMs that are not CloudStack's: "
                            f"{shown}", observed=len(names), expected=0)


@rule("duplicate-mac", hypervisors=ANY_KIND, basis="INF",
      sources=[outside("IEEE 802: a MAC address is unique on its network (CloudStack allocates guest MACs per zone)")],
      evidence=["vm_nics.mac", "vms.uuid"],
      remediation="Give each NIC its own MAC address: duplicates break guest networking.")
def duplicate_mac(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """No two VM NICs share a MAC address, across all targets."""
    # A VM counts once per UUID (a stale copy on a second host is the same VM), and the finding names the
    # first of them by UUID, in no cluster: the MAC's owners may be anywhere.
    # Most estates repeat no MAC: then nothing more is looked at.
    repeated = {mac for mac, count in Counter(nic.mac for nic in view.vm_nics).items() if mac and count > 1}
    if not repeated:
        return
    uuid_of = {(v.target, v.key): v.uuid or v.key for v in view.vms}
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for nic in view.vm_nics:
        if nic.mac in repeated and nic.mac:
            owners[nic.mac].add((nic.target, uuid_of.get((nic.target, nic.vm_key), nic.vm_key)))
    for mac, vms in owners.items():
        if len(vms) > 1:
            target, vm = min(vms)
            yield r.finding(Subject("vm", vm, target), f"MAC {mac} is used by {len(vms)} VMs",
                            observed=", ".join(sorted(v for _, v in vms)), expected="one VM per MAC")


@rule("duplicate-uuid", hypervisors=ANY_KIND, basis="INF",
      sources=[outside("CloudStack keys instances by UUID and instance name, KVM hosts by guid (its database schema)")],
      evidence=["vms.uuid", "hosts.uuid"],
      remediation="A VM defined on two hosts (stale after a migration) or cloned hosts: remove the stale copy, "
                  "regenerate the cloned host's UUID.")
def duplicate_uuid(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """VM and host UUIDs are unique across all targets."""
    yield from _repeated_uuids(r, "vm", view.vms)
    yield from _repeated_uuids(r, "host", view.hosts)


_UUID = attrgetter("uuid")


def _repeated_uuids(r: Rule, what: str, records: Sequence[Vm | Host]) -> Iterator[Finding]:
    repeated = {uuid for uuid, count in Counter(map(_UUID, records)).items() if uuid and count > 1}
    if not repeated:  # most estates: nothing more to look at
        return
    seen: dict[str, list[Vm | Host]] = defaultdict(list)
    for record in records:
        if record.uuid in repeated and record.uuid:
            seen[record.uuid].append(record)
    for uuid, dupes in seen.items():
        if len(dupes) > 1:
            yield r.finding(dupes[0], f"{what} UUID {uuid} appears {len(dupes)} times "
                            f"({', '.join(sorted(str(d.name) for d in dupes))})", observed=len(dupes), expected=1)
