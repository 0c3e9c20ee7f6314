"""Networking: management interfaces, traffic labels, the agent's bridges and the system-VM
control network."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter, defaultdict
from collections.abc import Iterator

from inventory.model import Host
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import raw_of, version_tuple

ALL_TAGS = "4.18.0.0–4.22.0.1"
KVM_RESOURCE = "plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/resource/"
CITRIX_BASE = "plugins/hypervisors/xenserver/src/main/java/com/cloud/hypervisor/xenserver/resource/CitrixResourceBase.java"


@rule("static-management-address", hypervisors={"xenserver", "vmware"}, basis="DOC",
      sources=[doc("installguide/hypervisor/xenserver.rst", "78", ALL_TAGS + " (76 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/hypervisor/xenserver.rst", "375-376", ALL_TAGS + " (373-374 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/hypervisor/vsphere.rst", "90", ALL_TAGS)],
      evidence=["host_nics.is_management", "host_nics.is_dhcp"],
      remediation="Give the management interface a static address (or a fixed DHCP reservation).")
def static_management_address(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management address of a XenServer or ESXi host is statically allocated."""
    yield from _dhcp_management(view, r, {"xenserver", "vmware"})


@rule("kvm-static-management-address", hypervisors={"kvm"}, basis="INF",
      sources=[doc("installguide/overview/_requirements.rst", "43",
                   ALL_TAGS + " (said of the management server; kvm.rst says nothing of it)")],
      evidence=["host_nics.is_management", "host_nics.is_dhcp"],
      remediation="Give the management bridge a static address (or a fixed DHCP reservation).")
def kvm_static_management_address(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management address of a KVM host is static.

    The KVM page does not ask for it (the XenServer and vSphere pages do); an address that changes
    under CloudStack's host record is inferred to break it.
    """
    yield from _dhcp_management(view, r, {"kvm"})


def _dhcp_management(view: InventoryView, r: Rule, kinds: set[str]) -> Iterator[Finding]:
    for nic in view.host_nics:
        if nic.is_management and nic.is_dhcp:
            host = view.host_by_key.get((nic.target, nic.host_key))
            kind = host.hypervisor if host is not None else view.kind_of_target(nic.target)
            if kind in kinds:
                yield r.finding(host or nic, f"{nic.host_key if host is None else host.name}: management "
                                f"{nic.device} {nic.ip} is from DHCP", observed="DHCP", expected="static")


@rule("traffic-labels-on-every-host", hypervisors=ANY_KIND, basis="CODE",
      sources=[code(CITRIX_BASE, "getHostInfo (a label with no network stops host start-up)", "≤4.11–4.22"),
               code(KVM_RESOURCE + "LibvirtComputingResource.java", "configure (no bridge: the agent stops)",
                    "≤4.11–4.22"),
               doc("installguide/hypervisor/kvm.rst", "627-652", ALL_TAGS + " (463-488 at 4.18.0.0–4.19.3.0, 575-600 at "
                                                                            "4.20.0.0, 581-606 at 4.20.1.0, 579-604 at "
                                                                            "4.20.2.0, 626-651 at 4.20.3.0, 629-654 at "
                                                                            "4.21.0.0)"),
               doc("installguide/hypervisor/xenserver.rst", "385-394", ALL_TAGS + " (383-392 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/hypervisor/vsphere.rst", "270-275", ALL_TAGS + " (272-277 at 4.18.0.0–4.20.3.0)")],
      evidence=["host_nics.device", "host_nics.kind", "networks.name"],
      remediation="Create the bridge (KVM) or name the network (XenServer: xe network-param-set name-label=…) on "
                  "every host of the cluster, identically.")
def traffic_labels_on_every_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every traffic label declared in [cloudstack.traffic_labels] exists on every host of each cluster."""
    if not view.traffic_labels:
        return
    distributed = _distributed_networks(view)
    for host in view.hosts:
        present = _host_labels(view, host, distributed)
        for traffic, full in view.traffic_labels_for(host.hypervisor).items():
            # a vSphere label is switch[,VLAN[,switch type]] (vsphere.rst:829-830): the switch is what must exist
            label = full.split(",")[0] if host.hypervisor == "vmware" else full
            if label and label not in present:
                yield r.finding(host, f"{host.name}: {traffic} label {label!r} not found",
                                observed=", ".join(sorted(present)), expected=label)


@rule("kvm-agent-devices-exist", hypervisors={"kvm"}, basis="CODE",
      sources=[code(KVM_RESOURCE + "LibvirtComputingResource.java",
                    "configure / getPifs (\"Failed to get … nic name\": the agent stops)", "≤4.11–4.22"),
               code("agent/src/main/java/com/cloud/agent/properties/AgentProperties.java",
                    "PRIVATE/PUBLIC/GUEST_NETWORK_DEVICE", "4.18–4.22")],
      evidence=["hosts.agent_private_device", "hosts.agent_public_device", "hosts.agent_guest_device",
                "host_nics.device"],
      remediation="Create the bridges named in agent.properties (private/public/guest.network.device) or fix them.")
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


@rule("kvm-link-local-free", hypervisors={"kvm"}, basis="INF",
      sources=[code(KVM_RESOURCE + "BridgeVifDriver.java",
                    "configure (control.cidr) / createControlNetwork / deleteExistingLinkLocalRouteTable", "≤4.11–4.22"),
               code("server/src/main/java/com/cloud/configuration/Config.java", "ControlCidr (169.254.0.0/16)",
                    "≤4.11–4.22")],
      evidence=["host_nics.ip_addresses", "host_nics.device", "hosts.raw_json.routes",
                "hosts.raw_json.agent_properties.control.cidr", "setting control.cidr"],
      remediation="Keep the control network's CIDR (169.254.0.0/16 by default) for CloudStack's cloud0 bridge: no "
                  "other addresses or routes in it (set NOZEROCONF=yes where zeroconf adds them).")
def kvm_link_local_free(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The system-VM control network (control.cidr, bridge cloud0) is used by nothing else on the host.

    The agent gives cloud0 the CIDR from agent.properties (control.cidr), else CloudStack's setting, and
    deletes that CIDR's routes on every other device: an address or route of it elsewhere is inferred to
    break — or be broken by — the system VMs' control traffic.
    """
    default = view.setting("control.cidr")
    for host in view.hosts_of("kvm"):
        props = raw_of(host).get("agent_properties") or {}
        cidr_text, source = (props["control.cidr"], "agent.properties") if props.get("control.cidr") else (
            default.value, f"{default.name}, {default.source}")
        try:
            cidr = ipaddress.ip_network(cidr_text, strict=False)
        except ValueError:
            continue
        bridge = props.get("private.bridge.name") or "cloud0"
        used = [f"{nic.device} {a}" for nic in view.nics_by_host.get((host.target, host.key), [])
                if nic.device != bridge for a in (nic.ip_addresses or "").split(",") if _in(a, cidr)]
        used += [f"route {route['dst']} on {route['dev']}" for route in raw_of(host).get("routes") or []
                 if route.get("dev") != bridge and route.get("dst") not in (None, "default")
                 and _overlaps(route["dst"], cidr)]
        if used:
            yield r.finding(host, f"{host.name}: {cidr} ({source}) is in use outside {bridge}: {', '.join(used)}",
                            observed=", ".join(used), expected=f"only on {bridge}")


def _in(address: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_interface(address.strip()).ip in cidr
    except ValueError:
        return False


def _overlaps(destination: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_network(destination, strict=False).overlaps(cidr)
    except ValueError:
        return False


IF_NAME_PATTERNS = re.compile(r"(eth|bond|vlan|vx|em|ens|eno|enp|team|enx|dummy|lo|p\d+p\d+)")


@rule("kvm-bridge-port-names", hypervisors={"kvm"}, basis="CODE",
      sources=[code(KVM_RESOURCE + "LibvirtComputingResource.java",
                    "getPif / matchPifFileInDirectory / isInterface (ifNamePatterns)", "≤4.11–4.22 (dummy, lo added later)"),
               doc("installguide/hypervisor/kvm.rst", "645-649", "4.18.0.0–4.22.0.1 (481-485 at 4.18.0.0–4.19.3.0, 593-597 "
                                                                 "at 4.20.0.0, 599-603 at 4.20.1.0, 597-601 at 4.20.2.0, "
                                                                 "644-648 at 4.20.3.0, 647-651 at 4.21.0.0)")],
      evidence=["hosts.agent_private_device", "hosts.agent_public_device", "hosts.agent_guest_device",
                "host_nics.network_key", "host_nics.kind"],
      remediation="Put a physical interface (or bond, team, VLAN device) named eth*, bond*, team*, vlan*, em*, ens*, "
                  "eno*, enp*, enx*, p<N>p<N>* … into each bridge the agent uses.")
def kvm_bridge_port_names(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Each Linux bridge the agent uses has a port whose name CloudStack's agent recognises as a physical NIC.

    The agent finds a bridge's physical interface among its ports by name (eth, bond, vlan, vx, em, ens,
    eno, enp, team, enx, p<N>p<N>; dummy and lo in newer releases) and builds guest VLANs on it; a bridge
    with no such port leaves it without a NIC for that traffic. Open vSwitch bridges are not looked at
    this way.
    """
    for host in view.hosts_of("kvm"):
        nics = view.nics_by_host.get((host.target, host.key), [])
        bridges = {n.device for n in nics if n.kind == "bridge"}
        used = {getattr(host, c) for c in ("agent_private_device", "agent_public_device", "agent_guest_device")}
        for bridge in sorted(b for b in used if b in bridges):
            ports = [n.device for n in nics if n.network_key == f"bridge:{bridge}" and n.device != bridge
                     and n.kind not in ("bridge", "ovs")]
            if not any(IF_NAME_PATTERNS.match(port) for port in ports):
                yield r.finding(host, f"{host.name}: bridge {bridge} has no port the agent takes for a physical NIC "
                                f"({', '.join(ports) or 'no ports'})", observed=", ".join(ports) or "no ports",
                                expected="eth*, bond*, team*, vlan*, em*, ens*, eno*, enp*, enx*, p<N>p<N>* …")


@rule("kvm-openvswitch", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("installguide/hypervisor/kvm.rst", "41-47", "4.18.0.0–4.22.0.1 (43-49 at 4.18.0.0–4.20.1.0, 43-49 at "
                                                               "4.21.0.0)"),
               doc("installguide/hypervisor/kvm.rst", "1252-1256", "4.18.0.0–4.22.0.1 (1042-1046 at 4.18.0.0–4.18.2.5, "
                                                                   "1088-1092 at 4.19.0.0–4.19.3.0, 1200-1204 at 4.20.0.0, "
                                                                   "1206-1210 at 4.20.1.0, 1268-1272 at 4.20.2.0, 1315-1319 "
                                                                   "at 4.20.3.0, 1254-1258 at 4.21.0.0)"),
               doc("installguide/configuration.rst", "1092-1094", "4.18.0.0–4.22.0.1 (1056-1058 at 4.18.0.0–4.18.1.1, "
                                                                  "1065-1067 at 4.18.2.0–4.18.2.5, 1056-1058 at "
                                                                  "4.19.0.0–4.19.0.2, 1065-1067 at 4.19.1.0–4.19.1.3, "
                                                                  "1077-1079 at 4.19.2.0–4.19.3.0, 1072-1074 at 4.20.0.0, "
                                                                  "1087-1089 at 4.20.1.0–4.20.2.0, 1099-1101 at 4.20.3.0, "
                                                                  "1089-1091 at 4.21.0.0)")],
      evidence=["hosts.raw_json.agent_properties.network.bridge.type", "hosts.ovs_version",
                "hosts.raw_json.bridge_module", "hosts.raw_json.missing_commands"],
      remediation="Install Open vSwitch 1.7.1 or later, add the bridge module to the modprobe denylist and unload it.")
def kvm_openvswitch(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts whose agent uses Open vSwitch have openvswitch 1.7.1 or later and no bridge module loaded."""
    for host in view.hosts_of("kvm"):
        raw = raw_of(host)
        if (raw.get("agent_properties") or {}).get("network.bridge.type") != "openvswitch":
            continue
        if "ovs_version" in (raw.get("missing_commands") or []):
            yield r.finding(host, f"{host.name}: network.bridge.type=openvswitch but Open vSwitch is not installed",
                            observed="not installed", expected="openvswitch ≥ 1.7.1")
        elif host.ovs_version and version_tuple(host.ovs_version) < (1, 7, 1):
            yield r.finding(host, f"{host.name}: Open vSwitch {host.ovs_version}", observed=host.ovs_version,
                            expected="≥ 1.7.1")
        if raw.get("bridge_module") == "loaded":
            yield r.finding(host, f"{host.name}: the kernel bridge module is loaded next to Open vSwitch",
                            observed="bridge loaded", expected="bridge module denylisted and unloaded")


@rule("kvm-agent-connected", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("conceptsandterminology/network_setup.rst", "854", "4.18.0.0–4.22.0.1 (port 8250)"),
               doc("adminguide/hosts.rst", "812-818", "4.18.0.0–4.22.0.1 (723-729 at 4.18.0.0, 757-763 at "
                                                      "4.18.1.0–4.19.0.2, 756-762 at 4.19.1.0–4.20.3.0)")],
      evidence=["hosts.agent_state", "hosts.agent_connected", "hosts.agent_host", "hosts.raw_json.agent_peers"],
      remediation="Let the host reach the management servers named in agent.properties host= on TCP 8250 (routes, "
                  "firewalls, the load balancer), then restart cloudstack-agent.")
def kvm_agent_connected(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A running agent is connected to a management server on TCP 8250."""
    for host in view.hosts_of("kvm"):
        if host.agent_state == "active" and host.agent_connected is False:
            yield r.finding(host, f"{host.name}: cloudstack-agent runs but has no connection to port 8250 "
                            f"(host={host.agent_host})", observed="no connection", expected=f"{host.agent_host}:8250")


@rule("xen-management-pif", hypervisors={"xenserver"}, basis="CODE",
      sources=[code(CITRIX_BASE, "getManagementNetwork (VLAN PIF or bond member: an exception)", "≤4.11–4.22")],
      evidence=["host_nics.is_management", "host_nics.vlan", "host_nics.bond"],
      remediation="Move the management interface off the VLAN / onto the bond itself.")
def xen_management_pif(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management PIF is neither a VLAN PIF nor a bond member."""
    for nic in view.host_nics:
        host = view.host_by_key.get((nic.target, nic.host_key))
        if host is not None and host.hypervisor == "xenserver" and nic.is_management and (nic.vlan or nic.bond):
            what = f"VLAN {nic.vlan}" if nic.vlan else f"a member of {nic.bond}"
            yield r.finding(host, f"{host.name}: management PIF {nic.device} is {what}", observed=what,
                            expected="untagged, not a bond member")


@rule("xen-bonds-alike", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("installguide/hypervisor/xenserver.rst", "370-373", ALL_TAGS + " (368-371 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/configuration.rst", "1051-1052", ALL_TAGS + " (1015-1016 at 4.18.0.0–4.18.1.1, 1024-1025 "
                                                                             "at 4.18.2.0–4.18.2.5, 1015-1016 at "
                                                                             "4.19.0.0–4.19.0.2, 1024-1025 at "
                                                                             "4.19.1.0–4.19.1.3, 1036-1037 at "
                                                                             "4.19.2.0–4.19.3.0, 1031-1032 at 4.20.0.0, "
                                                                             "1046-1047 at 4.20.1.0–4.20.2.0, 1058-1059 at "
                                                                             "4.20.3.0, 1048-1049 at 4.21.0.0)")],
      evidence=["hosts.raw_json.bonds"],
      remediation="Cable and bond every host of the pool alike (the same NICs in the same bond for each network), "
                  "then run cloud-setup-bonding.sh on the master.")
def xen_bonds_alike(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host of a XenServer pool bonds the same NICs for the same networks."""
    for group in view.groups_of("xenserver"):
        layouts = {h.key: _bond_layout(h) for h in group.hosts if (h.raw_json or {}).get("bonds") is not None}
        if not any(layouts.values()):
            continue
        counts = Counter(layouts.values())
        common = counts.most_common(1)[0][0]
        for host in group.hosts:
            layout = layouts.get(host.key)
            if layout is not None and layout != common:
                yield r.finding(host, f"{host.name}: bonds differ from its pool mates", observed=layout or "no bonds",
                                expected=common or "no bonds", cluster=group.key)


def _bond_layout(host: Host) -> str:
    bonds = (host.raw_json or {}).get("bonds") or {}
    return "; ".join(f"{network}: {'+'.join(b.get('members') or [])} ({b.get('mode')})"
                     for network, b in sorted(bonds.items()))


@rule("xen-sg-bridge-backend", hypervisors={"xenserver"}, basis="CODE",
      sources=[code("plugins/hypervisors/xenserver/src/main/java/com/cloud/hypervisor/xenserver/resource/wrapper/"
                    "xenbase/CitrixSetupCommandWrapper.java", "execute (canBridgeFirewall false: \"Failed to "
                    "configure bridge firewall\")", "≤4.11–4.22"),
               doc("installguide/hypervisor/xenserver.rst", "169-192", ALL_TAGS + " (167-190 at 4.18.0.0–4.20.0.0)")],
      evidence=["hosts.raw_json.network_backend", "[cloudstack] features"],
      remediation="Switch the hosts to the Linux bridge backend (xe-switch-network-backend bridge, reboot) and set "
                  "net.bridge.bridge-nf-call-iptables and -arptables to 1.")
def xen_sg_bridge_backend(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """With security groups, XenServer hosts use the Linux bridge network backend.

    Checked when the config says the zone uses security groups ([cloudstack] features =
    ["security-groups"]). The backend is in XAPI's software_version; the bridge-nf sysctls CloudStack
    also needs live in dom0's files, which XAPI does not show.
    """
    if not view.uses("security-groups"):
        return
    for host in view.hosts_of("xenserver"):
        backend = raw_of(host).get("network_backend")
        if backend and backend != "bridge":
            yield r.finding(host, f"{host.name}: network backend is {backend}", observed=backend, expected="bridge")


@rule("vmware-management-portgroup", hypervisors={"vmware"}, basis="CODE",
      sources=[code("vmware-base/src/main/java/com/cloud/hypervisor/vmware/mo/HostMO.java",
                    "getHyperHostNetworkSummary (\"Unable to find management port group\")", "≤4.11–4.22"),
               code("server/src/main/java/com/cloud/configuration/Config.java",
                    "VmwareManagementPortGroup (vmware.management.portgroup, \"Management Network\")", "≤4.11–4.22"),
               doc("installguide/hypervisor/vsphere.rst", "336-345", ALL_TAGS + " (338-347 at 4.18.0.0–4.20.3.0)")],
      evidence=["hosts.raw_json.management_vnics", "host_nics.kind", "host_nics.bond",
                "setting vmware.management.portgroup"],
      remediation="Give every host a management VMkernel NIC on the port group vmware.management.portgroup names "
                  "(default \"Management Network\"), labelled the same on all hosts, or set the setting to the "
                  "label the hosts use.")
def vmware_management_portgroup(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every ESXi host has a management-capable VMkernel NIC on the port group vmware.management.portgroup names.

    As CloudStack looks for it: among the VMkernel NICs the host offers for management, one whose port
    group — or, on a distributed switch, dvPortgroup — has that name, compared ignoring case.
    """
    setting = view.setting("vmware.management.portgroup")
    wanted = setting.value.lower()
    for host in view.hosts_of("vmware"):
        candidates = raw_of(host).get("management_vnics")
        if candidates is None:  # a scan from before the services were read: its VMkernel NICs
            candidates = [{"device": n.device, "portgroup": n.bond}
                          for n in view.nics_by_host.get((host.target, host.key), []) if n.kind == "vmk"]
        if not any((c.get("portgroup") or "").lower() == wanted for c in candidates):
            yield r.finding(host, f"{host.name}: no management VMkernel NIC on {setting.value!r} ({setting.name}, "
                            f"{setting.source})",
                            observed=", ".join(f"{c.get('device')} on {c.get('portgroup')}" for c in candidates)
                            or "no VMkernel NIC", expected=f"a vmk on {setting.value}")


def _management_vnic(view: InventoryView, host: Host) -> dict[str, object] | None:
    """The host's management-capable VMkernel NIC on vmware.management.portgroup, as CloudStack picks it."""
    wanted = view.setting("vmware.management.portgroup").value.lower()
    for vnic in raw_of(host).get("management_vnics") or []:
        if (vnic.get("portgroup") or "").lower() == wanted:
            return dict(vnic)
    return None


@rule("vmware-management-vmk-services", hypervisors={"vmware"}, basis="DOC",
      sources=[doc("installguide/hypervisor/vsphere.rst", "317-334", "4.18.0.0–4.22.0.1 (319-336 at 4.18.0.0–4.20.3.0)")],
      evidence=["hosts.raw_json.management_vnics", "hosts.raw_json.vnic_services", "setting vmware.management.portgroup"],
      remediation="Enable Management and vMotion traffic on the management VMkernel NIC of every host.")
def vmware_management_vmk_services(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management VMkernel NIC carries both Management and vMotion traffic."""
    for host in view.hosts_of("vmware"):
        vnic, services = _management_vnic(view, host), raw_of(host).get("vnic_services")
        if vnic is None or services is None:
            continue  # no such NIC is vmware-management-portgroup's finding; None: not read
        enabled = set(services.get(str(vnic.get("device")), []))
        missing = [s for s in ("management", "vmotion") if s not in enabled]
        if missing:
            yield r.finding(host, f"{host.name}: {vnic.get('device')} on {vnic.get('portgroup')} lacks "
                            f"{' and '.join(missing)}", observed=", ".join(sorted(enabled)) or "nothing",
                            expected="management, vmotion")


@rule("vmware-management-standard-vswitch", hypervisors={"vmware"}, basis="DOC",
      sources=[doc("installguide/hypervisor/vsphere.rst", "785-797", "4.18.0.0–4.22.0.1 (787-799 at 4.18.0.0–4.20.3.0)")],
      evidence=["hosts.raw_json.management_vnics", "setting vmware.management.portgroup"],
      remediation="Keep the management (and storage) VMkernel NICs on a standard vSwitch; use distributed switches "
                  "for public and guest traffic only.")
def vmware_management_standard_vswitch(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management network is on a standard vSwitch, not a distributed one (VDS is for public and guest traffic).

    CloudStack's code would find a management port group on a distributed switch; the documentation says
    management and storage traffic do not support it.
    """
    for host in view.hosts_of("vmware"):
        vnic = _management_vnic(view, host)
        if vnic is not None and vnic.get("distributed"):
            yield r.finding(host, f"{host.name}: management {vnic.get('device')} is on the distributed port group "
                            f"{vnic.get('portgroup')}", observed="distributed switch", expected="standard vSwitch")


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
