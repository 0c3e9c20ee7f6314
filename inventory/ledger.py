"""The ledger: every requirement the review of the catalogue (issue 11) found — the rules it reviewed and the
documented requirements it found unchecked — and what cs-inventory does with each: the rules that check it,
or why it is not checked. docs/checks.md shows it (generated), with the count of documented requirements
checked; a test holds every rule to an entry and every entry's rules to the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement: where it is written down, the rules checking it, and what is not checked and why."""

    what: str
    source: str  # short: the file and lines (or code) the rules cite in full
    rules: tuple[str, ...] = ()
    not_checked: str | None = None  # a part (or all) not checked: why
    documented: bool = True  # False: no CloudStack text states it (the rules checking it are inferences)

    @property
    def status(self) -> str:
        if not self.rules:
            return "not checked"
        return "in part" if self.not_checked else "checked"


def _r(what: str, source: str, *rules: str, not_checked: str | None = None, documented: bool = True) -> Requirement:
    return Requirement(what, source, rules, not_checked, documented)


# The review's first table: the rules as they were, each now resting on its basis.
REVIEWED = (
    _r("CloudStack talks to the pool master", "XenServerConnectionPool.getConnect", "xen-target-is-master",
       documented=False),
    _r("The pool master is enabled", "none found (review: ?)", "xen-master-enabled", documented=False),
    _r("The cloudstack-agent runs on every KVM host", "kvm.rst:280; LibvirtServerDiscoverer.find",
       "kvm-agent-running"),
    _r("agent.properties zone/pod/cluster agree, guids unique", "AgentProperties.java (keys only)",
       "kvm-agent-settings-agree", documented=False),
    _r("Hypervisor version in the release's support matrix", "compat.rst:48-59", "hypervisor-version-supported"),
    _r("XenServer brand and version map to a resource class", "XcpServerDiscoverer.createServerResource",
       "xen-version-known-to-cloudstack"),
    _r("Guests per host below max_guests_limit (every hypervisor but KVM)", "CapacityManagerImpl",
       "guests-per-host"),
    _r("Data volumes per VM within max_data_volumes_limit", "VolumeApiServiceImpl", "data-volumes-per-vm"),
    _r("Cluster sizes: 16 KVM, 8 XenServer, 8 vSphere hosts", "configuration.rst:940, 1038-1040", "cluster-size"),
    _r("Homogeneous CPUs: same type, count and feature flags", "_requirements.rst:72-73", "cluster-same-cpu"),
    _r("One distribution (and version) per KVM cluster", "kvm.rst:53-54; LibvirtServerDiscoverer",
       "kvm-cluster-same-os", "kvm-cluster-same-os-version"),
    _r("One hypervisor version per pool / vSphere cluster", "xenserver.rst:768; configuration.rst:1036",
       "cluster-same-hypervisor-version", "vmware-cluster-same-version"),
    _r("Same libvirt and QEMU versions across a KVM cluster", "none (kvm.rst:1632-1638 says otherwise)",
       "kvm-cluster-same-versions", documented=False),
    _r("libvirt ≥ 1.2.0, QEMU ≥ 1.5", "kvm.rst:37-39", "kvm-libvirt-minimum"),
    _r("KVM hardware virtualisation (hvm guests, /dev/kvm)", "LibvirtComputingResource; LibvirtServerDiscoverer",
       "kvm-hardware-virtualisation"),
    _r("XenServer hardware virtualisation", "xenserver.rst:52", "xen-hardware-virtualisation"),
    _r("4 GB of memory per host (ESXi too)", "_requirements.rst:61; vsphere.rst:84", "host-memory"),
    _r("Clocks synchronised", "kvm.rst:131-135; xenserver.rst:123-127", "time-synchronised",
       not_checked="XenServer: dom0's NTP configuration is a file in dom0, not in XAPI's records (host.get_servertime "
                   "is one call per host, and tells the clock, not its synchronisation)"),
    _r("Statically allocated management address", "xenserver.rst:78; vsphere.rst:90", "static-management-address",
       "kvm-static-management-address"),
    _r("Hosts connected", "hosts.rst:24-31 (maintenance)", "host-state", documented=False),
    _r("XenServer pool HA enabled (documented as required)", "compat.rst:61; _xenserver_upg.rst:21-29",
       "xen-pool-ha"),
    _r("Management PIF neither VLAN nor bond member", "CitrixResourceBase.getManagementNetwork",
       "xen-management-pif"),
    _r("dom0 memory 2940 MB", "xenserver.rst:108-110", "xen-dom0-memory"),
    _r("Traffic labels on every host", "kvm.rst:627-652; xenserver.rst:385-394; CitrixResourceBase",
       "traffic-labels-on-every-host"),
    _r("agent.properties' bridges exist", "LibvirtComputingResource.configure", "kvm-agent-devices-exist"),
    _r("The control network's CIDR is free", "BridgeVifDriver; Config.java control.cidr", "kvm-link-local-free",
       documented=False),
    _r("Shared storage on every host of its cluster", "configuration.rst:1085-1087", "shared-storage-on-every-host"),
    _r("Storage used and allocated below CloudStack's thresholds", "StorageManagerImpl", "storage-capacity",
       "storage-allocated-capacity"),
    _r("No VMs but CloudStack's on its hosts", "_requirements.rst:69-70; vsphere.rst:148-155", "unmanaged-vms",
       "vmware-dedicated-cluster"),
    _r("No MAC address or UUID used twice", "none", "duplicate-mac", "duplicate-uuid", documented=False),
    _r("CloudStack manages ESXi through vCenter", "vsphere.rst:140", "vmware-target-is-vcenter"),
    _r("ESXi version and minor version in the release's matrix", "compat.rst:65-68", "vmware-version-supported"),
    _r("vSphere cluster within max_hosts_per_cluster", "VmwareServerDiscoverer.find", "vmware-hosts-per-cluster"),
    _r("A management vmk on vmware.management.portgroup", "HostMO.getHyperHostNetworkSummary",
       "vmware-management-portgroup"),
    _r("vSphere HA on the cluster (DRS: no source, dropped)", "VmwareServerDiscoverer (NativeHA)", "vmware-cluster-ha",
       documented=False),
)

# The review's second table: documented requirements no rule checked.
FOUND_MISSING = (
    _r("KVM host has a fully qualified name", "kvm.rst:115-123", "kvm-fqdn"),
    _r("Bridge ports named as the agent expects", "kvm.rst:645-649; LibvirtComputingResource",
       "kvm-bridge-port-names"),
    _r("Open vSwitch ≥ 1.7.1, bridge module denylisted", "kvm.rst:41-47, 1252-1256", "kvm-openvswitch"),
    _r("libvirtd.conf, --listen, masked sockets, remote_mode per distribution", "kvm.rst:449-531",
       "kvm-libvirtd-config"),
    _r("Agent certificates and libvirt TLS on 16514", "hosts.rst:823-841; kvm.rst:468", "kvm-agent-tls"),
    _r("SELinux permissive / AppArmor's libvirt profiles off", "kvm.rst:543-624", "kvm-security-policies"),
    _r("Firewall: ports 22, 1798, 16514, 5900-6100, 49152-49216; firewalld off; UFW forward ACCEPT",
       "kvm.rst:1496-1602", "kvm-firewalld-off", "kvm-ufw-forward-policy",
       not_checked="whether the ports are open: that is the whole ruleset (policies, chains, interfaces, sources) "
                   "and any firewall between the management server and the host; reading nft/iptables needs root and "
                   "still does not answer reachability"),
    _r("The agent's Java: 11 to 4.19, 17 from 4.20", "kvm.rst:161-164", "kvm-java-version"),
    _r("qemu.conf vnc_listen=0.0.0.0", "qig.rst:473-481 (quick installation guide only)",
       not_checked="only the quick installation guide sets it; CloudStack's code writes listen='0.0.0.0' into each "
                   "VM's graphics element (LibvirtVMDef.GraphicDef), so qemu.conf's default does not decide it"),
    _r("security_driver, hugepages", "not in the host documentation (hugepages: ovs-plugin.rst, DPDK only)",
       not_checked="no host requirement is written", documented=False),
    _r("guest.cpu.mode/model/features consistent per cluster", "kvm.rst:349-436", "kvm-guest-cpu-consistent"),
    _r("UEFI firmware (ovmf / edk2-ovmf) where UEFI instances run", "kvm.rst:1641-1648", "kvm-uefi-firmware"),
    _r("aria2 for direct-download templates", "kvm.rst:1608-1617", "kvm-aria2"),
    _r("Agents reach the management server on 8250", "network_setup.rst:854; hosts.rst:812-818",
       "kvm-agent-connected"),
    _r("Host architecture equals the cluster's (4.20+)", "configuration.rst:1036, 1045-1046; AgentManagerImpl",
       "cluster-same-arch"),
    _r("36 GB of local disk", "_requirements.rst:63; xenserver.rst:74; vsphere.rst:86", "host-local-disk",
       not_checked="XenServer: XAPI shows only the SRs on the host's disk, not the disk; KVM hosts are not asked "
                   "(the fact script reads no block devices)"),
    _r("XenServer NICs cabled and bonded alike", "xenserver.rst:370-373; configuration.rst:1051-1052",
       "xen-bonds-alike"),
    _r("XenServer network labels (management included) on every host", "xenserver.rst:385-406",
       "traffic-labels-on-every-host"),
    _r("XenServer hotfixes: the latest, equal across the pool", "xenserver.rst:54-61; _requirements.rst:67",
       "xen-pool-same-updates",
       not_checked="which hotfixes are the latest is the vendor's, not knowable from the pool offline; equality "
                   "across the pool is checked"),
    _r("XenServer HA for the pool master only, not VMs", "_xenserver_upg.rst:21-26", "xen-vm-ha-off"),
    _r("\"XenServer Tools\" SR on XenServer 8.2", "compat.rst:63", "xen-tools-sr"),
    _r("Bridge backend (and bridge-nf sysctls) for security groups", "xenserver.rst:169-192; "
       "CitrixSetupCommandWrapper", "xen-sg-bridge-backend",
       not_checked="the bridge-nf-call sysctls: dom0's files, which XAPI does not show"),
    _r("XenServer hosts share the root credentials", "xenserver.rst:116-120",
       not_checked="it takes a login on every host with the pool's password, and a pool member answers "
                   "HOST_IS_SLAVE before it checks the password; cs-inventory logs in to the master only"),
    _r("vSwitches per traffic type; management and storage on standard switches", "vsphere.rst:267-292, 785-797",
       "vmware-management-standard-vswitch", "traffic-labels-on-every-host",
       not_checked="storage traffic: which VMkernel NIC carries NFS or iSCSI is not a service vSphere records"),
    _r("Management vmk with Management and vMotion", "vsphere.rst:317-334", "vmware-management-vmk-services"),
    _r("The console proxy's VNC range open in the ESXi firewall", "vsphere.rst:348-358", "vmware-vnc-firewall"),
    _r("vCenter version in the release's matrix", "compat.rst:65", "vcenter-version-supported"),
    _r("ESXi, not ESX", "vsphere.rst:140", "vmware-esxi-not-esx"),
    _r("Dedicated clusters in a separate datacenter", "vsphere.rst:148-155", "vmware-dedicated-cluster",
       not_checked="which datacenter is CloudStack's is CloudStack's data (the zone's vCenter binding), not the "
                   "hosts'"),
    _r("vmware.reserve.cpu/mem, datastore naming", "configuration.rst (cluster settings)",
       not_checked="cluster settings of CloudStack, not facts of the hosts", documented=False),
)

LEDGER = REVIEWED + FOUND_MISSING


def summary(rows: tuple[Requirement, ...] = LEDGER) -> dict[str, int]:
    """How many documented requirements are checked, in part, or not at all."""
    documented = [r for r in rows if r.documented]
    return {"documented": len(documented),
            "checked": sum(r.status == "checked" for r in documented),
            "in part": sum(r.status == "in part" for r in documented),
            "not checked": sum(r.status == "not checked" for r in documented),
            "inferences": sum(not r.documented and bool(r.rules) for r in rows)}


def markdown() -> str:
    counts = summary()
    lines = [f"{counts['checked'] + counts['in part']} of {counts['documented']} documented requirements are checked "
             f"({counts['in part']} of them in part); {counts['not checked']} are not, each with the reason. "
             f"{counts['inferences']} more of the reviewed rules rest on no CloudStack text: they are inferences, "
             "marked INF.", ""]
    for title, rows in (("The rules the review read", REVIEWED), ("Requirements the review found unchecked",
                                                                   FOUND_MISSING)):
        lines += [f"**{title}**", "", "| requirement | written in | checked by | status | not checked, and why |",
                  "| --- | --- | --- | --- | --- |"]
        for req in rows:
            rules = ", ".join(f"`{r}`" for r in req.rules) or "—"
            status = req.status if req.documented else f"{req.status} (not documented)"
            lines.append(f"| {req.what} | {req.source} | {rules} | {status} | {req.not_checked or ''} |")
        lines.append("")
    return "\n".join(lines)
