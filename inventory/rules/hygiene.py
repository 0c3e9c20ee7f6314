"""Estate hygiene: only CloudStack's VMs on its hosts, and no MAC address or UUID used twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from inventory.model import Host, Vm
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, Subject, rule


@rule("unmanaged-vms", severity="info", hypervisors=ANY_KIND, basis="BP",
      remediation="Move VMs CloudStack does not manage off its hosts, or import them into CloudStack.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst; choosing_deployment_architecture.rst")
def unmanaged_vms(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """CloudStack hosts run only CloudStack's VMs (judged by name; with CloudStack's own list in the scan,
    ``reconcile-vm-unknown-to-cloudstack`` is certain and this rule stands down)."""
    if view.has_cloudstack_view:
        return
    for vm in view.vms:
        if vm.cs_role == "unmanaged" and not vm.is_template:
            yield r.finding(vm, f"{vm.name} is not a CloudStack instance", observed=vm.name,
                            expected="i-/r-/s-/v- instance names")


@rule("duplicate-mac", severity="error", hypervisors=ANY_KIND, basis="INF",
      remediation="Give each NIC its own MAC address: duplicates break guest networking.",
      reference="IEEE 802 (MAC addresses are unique on a network); CloudStack allocates MACs per zone")
def duplicate_mac(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """No two VM NICs share a MAC address, across all targets."""
    # A VM counts once per UUID (a stale copy on a second host is the same VM), and the finding names the
    # first of them by UUID, in no cluster: the MAC's owners may be anywhere.
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    uuid_of = {(v.target, v.key): v.uuid or v.key for v in view.vms}
    for nic in view.vm_nics:
        if nic.mac:
            owners[nic.mac].add((nic.target, uuid_of.get((nic.target, nic.vm_key), nic.vm_key)))
    for mac, vms in owners.items():
        if len(vms) > 1:
            target, vm = sorted(vms)[0]
            yield r.finding(Subject("vm", vm, target), f"MAC {mac} is used by {len(vms)} VMs",
                            observed=", ".join(sorted(v for _, v in vms)), expected="one VM per MAC")


@rule("duplicate-uuid", severity="warning", hypervisors=ANY_KIND, basis="INF",
      remediation="A VM defined on two hosts (stale after a migration) or cloned hosts: remove the stale copy, "
                  "regenerate the cloned host's UUID.",
      reference="CloudStack identifies VMs by UUID/instance name and KVM hosts by guid")
def duplicate_uuid(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """VM and host UUIDs are unique across all targets."""
    yield from _repeated_uuids(r, "vm", view.vms)
    yield from _repeated_uuids(r, "host", view.hosts)


def _repeated_uuids(r: Rule, what: str, records: Sequence[Vm | Host]) -> Iterator[Finding]:
    seen: dict[str, list[Vm | Host]] = defaultdict(list)
    for record in records:
        if record.uuid:
            seen[record.uuid].append(record)
    for uuid, dupes in seen.items():
        if len(dupes) > 1:
            yield r.finding(dupes[0], f"{what} UUID {uuid} appears {len(dupes)} times "
                            f"({', '.join(sorted(str(d.name) for d in dupes))})", observed=len(dupes), expected=1)
