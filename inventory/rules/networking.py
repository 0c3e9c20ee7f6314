"""Networking: management interfaces, traffic labels, the agent's bridges and the system-VM
control network."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from inventory.model import Host
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, rule


@rule("static-management-address", severity="warning", hypervisors=ANY_KIND, basis="DOC",
      remediation="Give the management interface a static address (or a fixed DHCP reservation).",
      reference="cloudstack-documentation installguide/hypervisor/xenserver.rst, kvm.rst")
def static_management_address(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management address is static."""
    for nic in view.host_nics:
        if nic.is_management and nic.is_dhcp:
            host = view.host_by_key.get((nic.target, nic.host_key))
            yield r.finding(host or nic, f"{nic.host_key if host is None else host.name}: management {nic.device} "
                            f"{nic.ip} is from DHCP", observed="DHCP", expected="static")


@rule("traffic-labels-on-every-host", severity="error", hypervisors=ANY_KIND, basis="CODE + DOC",
      remediation="Create the bridge (KVM) or name the network (XenServer: xe network-param-set name-label=…) on "
                  "every host of the cluster, identically.",
      reference="cloudstack-documentation kvm.rst \"Configuring the Networking\"; CitrixResourceBase.java getHostInfo")
def traffic_labels_on_every_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every traffic label declared in [cloudstack.traffic_labels] exists on every host of each cluster."""
    if not view.traffic_labels:
        return
    distributed = _distributed_networks(view)
    for host in view.hosts:
        present = _host_labels(view, host, distributed)
        for traffic, label in view.traffic_labels.items():
            if label not in present:
                yield r.finding(host, f"{host.name}: {traffic} label {label!r} not found",
                                observed=", ".join(sorted(present)), expected=label)


@rule("kvm-agent-devices-exist", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Create the bridges named in agent.properties (private/public/guest.network.device) or fix them.",
      reference="apache/cloudstack AgentProperties.java; LibvirtComputingResource.java configure")
def kvm_agent_devices_exist(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The bridges agent.properties names for private, public and guest traffic exist on the host."""
    for host in view.hosts_of("kvm"):
        devices = {n.device for n in view.nics_by_host.get((host.target, host.key), [])}
        if not devices:
            continue
        for column in ("agent_private_device", "agent_public_device", "agent_guest_device"):
            device = getattr(host, column)
            if device and device not in devices:
                yield r.finding(host, f"{host.name}: agent.properties {column[6:].replace('_', '.')}={device} "
                                "does not exist", observed="missing", expected=device)


@rule("kvm-link-local-free", severity="warning", hypervisors={"kvm"}, basis="CODE + INF",
      remediation="Keep 169.254.0.0/16 for CloudStack's cloud0 bridge (set NOZEROCONF=yes; no other link-local users).",
      reference="apache/cloudstack BridgeVifDriver.java createControlNetwork; Config.java control.cidr")
def kvm_link_local_free(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The system-VM control network (169.254.0.0/16, bridge cloud0) is not used by anything else on the host."""
    for nic in view.host_nics:
        host = view.host_by_key.get((nic.target, nic.host_key))
        if host is None or host.hypervisor != "kvm" or nic.device == "cloud0":
            continue
        used = [a for a in (nic.ip_addresses or "").split(",") if a.startswith("169.254.")]
        if used:
            yield r.finding(host, f"{host.name}: {nic.device} holds link-local {', '.join(used)}",
                            observed=", ".join(used), expected="only on cloud0")


@rule("xen-management-pif", severity="error", hypervisors={"xenserver"}, basis="CODE",
      remediation="Move the management interface off the VLAN / onto the bond itself.",
      reference="apache/cloudstack CitrixResourceBase.java getManagementNetwork")
def xen_management_pif(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management PIF is neither a VLAN PIF nor a bond member."""
    for nic in view.host_nics:
        host = view.host_by_key.get((nic.target, nic.host_key))
        if host is not None and host.hypervisor == "xenserver" and nic.is_management and (nic.vlan or nic.bond):
            what = f"VLAN {nic.vlan}" if nic.vlan else f"a member of {nic.bond}"
            yield r.finding(host, f"{host.name}: management PIF {nic.device} is {what}", observed=what,
                            expected="untagged, not a bond member")


@rule("vmware-management-portgroup", severity="error", hypervisors={"vmware"}, basis="CODE + DOC",
      remediation="Give every host a VMkernel NIC on the management port group (vmware.management.portgroup, default "
                  "\"Management Network\"), named the same on all hosts.",
      reference="apache/cloudstack VmwareResource.java fillHostNetworkInfo / HostMO.getHyperHostNetworkSummary; "
                "Config.java vmware.management.portgroup")
def vmware_management_portgroup(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every ESXi host has a VMkernel NIC on the "Management Network" port group."""
    for host in view.hosts_of("vmware"):
        vmks = [n for n in view.nics_by_host.get((host.target, host.key), []) if n.kind == "vmk"]
        if not any(n.bond == "Management Network" for n in vmks):
            yield r.finding(host, f"{host.name}: no VMkernel NIC on \"Management Network\"",
                            observed=", ".join(f"{n.device} on {n.bond}" for n in vmks) or "no VMkernel NIC",
                            expected="a vmk on Management Network")


def _distributed_networks(view: InventoryView) -> dict[str, set[str]]:
    """Names of distributed switches and port groups, by target (VMware)."""
    names: dict[str, set[str]] = defaultdict(set)
    for network in view.networks:
        if network.kind in ("dvswitch", "dvportgroup"):
            names[network.target].add(network.name)
    return names


def _host_labels(view: InventoryView, host: Host, distributed: dict[str, set[str]]) -> set[str]:
    """What a traffic label can name on this host: bridges (KVM), network name-labels (Xen), vSwitches, port
    groups and distributed switches/port groups (VMware; dvSwitch membership per host is not read)."""
    labels = set()
    for nic in view.nics_by_host.get((host.target, host.key), []):
        network = view.network_by_key.get((nic.target, nic.network_key or ""))
        if nic.kind in ("bridge", "ovs", "vswitch"):
            labels.add(nic.device)
        if network is not None:
            labels.add(network.name)
    if host.hypervisor == "vmware":
        labels |= distributed.get(host.target, set())
    return labels
