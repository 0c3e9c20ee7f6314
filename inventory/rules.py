"""The rule catalogue: CloudStack's requirements as checks over a stored scan.

Each rule's docstring is its documentation (first line: the requirement). References name the
document or source file where the requirement is written down (see the project's reference
sheet, built from apache/cloudstack and cloudstack-documentation at 4.18–4.22).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from inventory.checks import Finding, InventoryView, Rule, rule
from inventory.releases import kvm_os_supported, xen_supported

GiB = 2**30
EL_FAMILY = {"rocky", "rhel", "ol", "almalinux"}
DOCS = "cloudstack-documentation"


def _version_tuple(text: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in (text or "").split(".") if p.isdigit())


# -- connection model -------------------------------------------------------------------------
@rule("xen-target-is-master", severity="warning", hypervisors={"xenserver"}, basis="CODE",
      remediation="Configure the pool master's address (CloudStack follows HOST_IS_SLAVE too, but the master must "
                  "be reachable and enabled).",
      reference="apache/cloudstack XenServerConnectionPool.java (HOST_IS_SLAVE handling); xenserver.rst")
def xen_target_is_master(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A XenServer target should be the pool master, not a member."""
    for cluster in view.clusters:
        raw = _raw(cluster)
        if cluster["hypervisor"] == "xenserver" and raw.get("configured_is_master") is False:
            yield r.finding("target", cluster["target"], cluster["target"],
                            f"configured on a pool member; the master is {raw.get('master_url')}",
                            observed=raw.get("configured_url"), expected=raw.get("master_url"),
                            cluster=cluster["key"])


@rule("xen-master-enabled", severity="error", hypervisors={"xenserver"}, basis="CODE",
      remediation="Enable the pool master (xe host-enable) or designate a new master.",
      reference="apache/cloudstack XenServerConnectionPool.java (≤4.11)")
def xen_master_enabled(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The pool master must be enabled."""
    for host in view.hosts_of("xenserver"):
        if host["is_pool_master"] and host["state"] != "connected":
            yield r.finding("host", host["key"], host["target"], f"pool master {host['name']} is {host['state']}",
                            observed=host["state"], expected="connected", cluster=host["cluster_key"])


@rule("kvm-agent-running", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Install cloudstack-agent (the management server does it when adding the host) and start it: "
                  "systemctl enable --now cloudstack-agent.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst; LibvirtServerDiscoverer.java")
def kvm_agent_running(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A KVM host in CloudStack runs the cloudstack-agent."""
    for host in view.hosts_of("kvm"):
        state = host["agent_state"]
        if state is not None and state != "active":
            what = "is not installed" if state == "not-installed" else f"is {state}"
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: cloudstack-agent {what}",
                            observed=state, expected="active", cluster=host["cluster_key"])


@rule("kvm-agent-settings-agree", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Re-add the host to the right cluster, or fix zone/pod/cluster in agent.properties and restart "
                  "the agent; every host needs its own guid.",
      reference="apache/cloudstack agent/src/main/java/com/cloud/agent/properties/AgentProperties.java")
def kvm_agent_settings_agree(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one cluster have the same zone, pod and cluster in agent.properties, and unique guids."""
    for (target, cluster), hosts in view.cluster_groups("kvm").items():
        for setting in ("agent_zone", "agent_pod", "agent_cluster"):
            values = Counter(h[setting] for h in hosts if h[setting] is not None)
            if len(values) > 1:
                common = values.most_common(1)[0][0]
                for host in hosts:
                    if host[setting] is not None and host[setting] != common:
                        yield r.finding("host", host["key"], target,
                                        f"{host['name']}: agent.properties {setting[6:]}={host[setting]}, its "
                                        f"cluster mates say {common}", observed=host[setting], expected=common,
                                        cluster=cluster)
    guids = Counter(h["agent_guid"] for h in view.hosts_of("kvm") if h["agent_guid"])
    for host in view.hosts_of("kvm"):
        if host["agent_guid"] and guids[host["agent_guid"]] > 1:
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: agent guid "
                            f"{host['agent_guid']} is used by {guids[host['agent_guid']]} hosts",
                            observed=host["agent_guid"], expected="unique", cluster=host["cluster_key"])


# -- versions and limits ------------------------------------------------------------------------
@rule("hypervisor-version-supported", severity="warning", hypervisors={"kvm", "xenserver"}, basis="DOC",
      remediation="Upgrade the hypervisor (or the host OS) to a version the CloudStack release supports.",
      reference="cloudstack-documentation releasenotes/compat.rst at the release's tag")
def hypervisor_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The host's OS (KVM) or product version (XenServer/XCP-ng) is in the release's support matrix."""
    for host in view.hosts:
        if host["hypervisor"] == "kvm" and host["os_id"]:
            ok, listed = kvm_os_supported(view.release, host["os_id"], host["os_version"])
            if not ok:
                yield r.finding("host", host["key"], host["target"],
                                f"{host['name']}: {host['os_name']} {host['os_version']} is not a KVM host OS of "
                                f"CloudStack {view.release.asked}", observed=f"{host['os_name']} {host['os_version']}",
                                expected=listed, cluster=host["cluster_key"])
        elif host["hypervisor"] == "xenserver":
            verdict, listed = xen_supported(view.release, host["product_name"], host["hypervisor_version"])
            if verdict != "supported":
                yield r.finding("host", host["key"], host["target"],
                                f"{host['name']}: {host['product_name']} {host['hypervisor_version']} is "
                                f"{'no longer supported' if verdict == 'dropped' else 'not listed'} for CloudStack "
                                f"{view.release.asked}", observed=f"{host['product_name']} {host['hypervisor_version']}",
                                expected=listed, severity="error" if verdict == "dropped" else None,
                                cluster=host["cluster_key"])


@rule("xen-version-known-to-cloudstack", severity="error", hypervisors={"xenserver"}, basis="CODE",
      remediation="Upgrade the pool to a XenServer/XCP-ng release CloudStack has a resource class for.",
      reference="apache/cloudstack XcpServerDiscoverer.java createServerResource (4.22 line)")
def xen_version_known_to_cloudstack(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The pool's product and version map to one of CloudStack's XenServer resource classes.

    Mapped: XCP 1.x; XenServer 5.6.x, 6.0.0, 6.0.2, 6.1.0, 6.2.0; and any XenServer, XCP-ng or
    Citrix Hypervisor from 6.4 on. Anything else makes adding the host throw.
    """
    for host in view.hosts_of("xenserver"):
        brand, version = host["product_name"] or "", host["hypervisor_version"] or ""
        numbers = _version_tuple(version)
        known = (brand.startswith("XCP") and (brand != "XCP" or numbers[:1] == (1,))) or \
            numbers[:2] == (5, 6) or numbers[:3] in ((6, 0, 0), (6, 0, 2), (6, 1, 0), (6, 2, 0)) or numbers >= (6, 4)
        if not known:
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: CloudStack has no resource class "
                            f"for {brand} {version}", observed=f"{brand} {version}",
                            expected="XenServer 5.6, 6.0, 6.0.2, 6.1, 6.2 or ≥ 6.4; XCP-ng; XCP 1.x",
                            cluster=host["cluster_key"])


@rule("guests-per-host", severity="error", hypervisors={"xenserver"}, basis="DB + CODE",
      remediation="Move running VMs off the host or add hosts; the limit is hypervisor_capabilities.max_guests_limit.",
      reference="apache/cloudstack CapacityManagerImpl.java; hypervisor_capabilities rows (DB scripts)")
def guests_per_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Running guests per host stay within the release's max_guests_limit (enforced for XenServer)."""
    running = Counter((v["target"], v["host_key"]) for v in view.vms if v["power_state"] == "running")
    for host in view.hosts_of("xenserver"):
        limits = view.release.limits("xenserver", host["hypervisor_version"])
        count = running[(host["target"], host["key"])]
        if limits.max_guests is not None and count > limits.max_guests:
            yield r.finding("host", host["key"], host["target"], f"{host['name']} runs {count} guests; "
                            f"{limits.row} allows {limits.max_guests}", observed=count, expected=f"≤ {limits.max_guests}",
                            cluster=host["cluster_key"])


@rule("data-volumes-per-vm", severity="error", hypervisors={"kvm", "xenserver", "vmware"}, basis="DB + CODE",
      remediation="Detach data disks: CloudStack will not attach more than max_data_volumes_limit to one VM.",
      reference="apache/cloudstack hypervisor_capabilities.max_data_volumes_limit (DB scripts); VolumeApiServiceImpl")
def data_volumes_per_vm(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Data volumes per VM stay within the release's max_data_volumes_limit."""
    disks = Counter((d["target"], d["vm_key"]) for d in view.vm_disks if d["disk_type"] in ("disk", None))
    for vm in view.vms:
        host = view.host_by_key.get((vm["target"], vm["host_key"]), {})
        hypervisor = host.get("hypervisor") or _target_kind(view, vm["target"])
        if hypervisor not in ("kvm", "xenserver", "vmware"):
            continue
        version = _raw(host).get("api_version") if hypervisor == "vmware" else host.get("hypervisor_version")
        limits = view.release.limits(hypervisor, version)
        data = max(0, disks[(vm["target"], vm["key"])] - 1)
        if limits.max_data_volumes is not None and data > limits.max_data_volumes:
            yield r.finding("vm", vm["key"], vm["target"], f"{vm['name']} has {data} data volumes; {limits.row} "
                            f"allows {limits.max_data_volumes}", observed=data, expected=f"≤ {limits.max_data_volumes}",
                            cluster=vm["cluster_key"])


@rule("cluster-size", severity="warning", hypervisors={"kvm", "xenserver"}, basis="BP",
      remediation="Split the cluster: the documentation advises at most 16 KVM hosts or 8 XenServer hosts per cluster.",
      reference="cloudstack-documentation installguide/configuration.rst (\"do not put more than\")")
def cluster_size(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Clusters stay small: at most 16 KVM hosts, at most 8 XenServer hosts."""
    for hypervisor, most in (("kvm", 16), ("xenserver", 8)):
        for (target, cluster), hosts in view.cluster_groups(hypervisor).items():
            if len(hosts) > most:
                yield r.finding("cluster", cluster, target, f"cluster {cluster} has {len(hosts)} hosts",
                                observed=len(hosts), expected=f"≤ {most}", cluster=cluster)


# -- homogeneity --------------------------------------------------------------------------------
@rule("cluster-same-cpu", severity="warning", hypervisors={"kvm", "xenserver", "vmware"}, basis="DOC",
      remediation="Keep one CPU vendor and model per cluster (live migration needs a common CPU feature set).",
      reference="cloudstack-documentation installguide/overview/_requirements.rst; hypervisor pages")
def cluster_same_cpu(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """All hosts of a cluster have the same CPU vendor, model and feature flags."""
    for hypervisor in ("kvm", "xenserver", "vmware"):
        for (target, cluster), hosts in view.cluster_groups(hypervisor).items():
            if hypervisor == "vmware" and not any(h["cluster_key"] for h in hosts):
                continue  # standalone ESXi hosts are no cluster
            for column, severity in (("cpu_vendor", "error"), ("cpu_model", None), ("cpu_flags", None)):
                yield from _odd_ones_out(r, hosts, column, target, cluster, severity)


@rule("kvm-cluster-same-os", severity="error", hypervisors={"kvm"}, basis="DOC + CODE",
      remediation="Run one distribution (and version) on every host of a KVM cluster.",
      reference="apache/cloudstack LibvirtServerDiscoverer.java createHostVOForConnectedAgent; kvm.rst")
def kvm_cluster_same_os(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same distribution (EL rebuilds count as one since 4.19.1.0)."""
    el_compatible = view.release.at_least("4.19.1.0")
    for (target, cluster), hosts in view.cluster_groups("kvm").items():
        known = [h for h in hosts if h["os_id"]]
        families = Counter("el" if el_compatible and h["os_id"] in EL_FAMILY else h["os_id"] for h in known)
        if len(families) > 1:
            common = families.most_common(1)[0][0]
            for h in known:
                family = "el" if el_compatible and h["os_id"] in EL_FAMILY else h["os_id"]
                if family != common:
                    yield r.finding("host", h["key"], target, f"{h['name']} runs {h['os_name']}, its cluster mates "
                                    f"{common}", observed=h["os_name"], expected=common, cluster=cluster)
        yield from _odd_ones_out(r, known, "os_version", target, cluster, "warning")


@rule("cluster-same-hypervisor-version", severity="warning", hypervisors={"xenserver", "vmware"}, basis="DOC",
      remediation="Finish the upgrade: one product version (and build) per pool or vSphere cluster.",
      reference="cloudstack-documentation installguide/configuration.rst (homogeneous clusters); _xenserver_upg.rst")
def cluster_same_hypervisor_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """One hypervisor product and version per cluster (a XenServer pool, a vSphere cluster)."""
    for hypervisor in ("xenserver", "vmware"):
        for (target, cluster), hosts in view.cluster_groups(hypervisor).items():
            if hypervisor == "vmware" and not any(h["cluster_key"] for h in hosts):
                continue
            yield from _odd_ones_out(r, hosts, "product_name", target, cluster, "error")
            yield from _odd_ones_out(r, hosts, "hypervisor_version", target, cluster, None)
            yield from _odd_ones_out(r, hosts, "build", target, cluster, None)


@rule("kvm-cluster-same-versions", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Upgrade libvirt and QEMU to the same versions on every host of the cluster.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst (live migration)")
def kvm_cluster_same_versions(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same libvirt and QEMU versions."""
    for (target, cluster), hosts in view.cluster_groups("kvm").items():
        yield from _odd_ones_out(r, hosts, "libvirt_version", target, cluster, None)
        yield from _odd_ones_out(r, hosts, "hypervisor_version", target, cluster, None)


@rule("kvm-libvirt-minimum", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Upgrade: CloudStack documents libvirt ≥ 1.2.0 and QEMU/KVM ≥ 1.5.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst (4.18–4.22)")
def kvm_libvirt_minimum(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """libvirt is at least 1.2.0 and QEMU at least 1.5."""
    for host in view.hosts_of("kvm"):
        for column, least in (("libvirt_version", (1, 2, 0)), ("hypervisor_version", (1, 5))):
            if column == "hypervisor_version" and host["product_name"] != "QEMU":
                continue  # another libvirt driver (the test driver reports its own version)
            if host[column] and _version_tuple(host[column]) < least:
                yield r.finding("host", host["key"], host["target"], f"{host['name']}: {column} {host[column]}",
                                observed=host[column], expected="≥ " + ".".join(map(str, least)),
                                cluster=host["cluster_key"])


# -- host fitness -------------------------------------------------------------------------------
@rule("kvm-hardware-virtualisation", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Enable VT-x/AMD-V in the BIOS and load kvm_intel or kvm_amd so /dev/kvm exists.",
      reference="apache/cloudstack LibvirtComputingResource.java IsHVMEnabled; LibvirtServerDiscoverer.java find")
def kvm_hardware_virtualisation(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """KVM hosts expose hardware virtualisation: an hvm guest type in libvirt and /dev/kvm."""
    for host in view.hosts_of("kvm"):
        missing = [what for what, ok in (("libvirt offers no hvm guests", host["libvirt_hvm"]),
                                         ("/dev/kvm is missing", host["dev_kvm"])) if ok is not None and not ok]
        if missing:
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: {'; '.join(missing)}",
                            observed="; ".join(missing), expected="hvm guests and /dev/kvm",
                            cluster=host["cluster_key"])


@rule("xen-hardware-virtualisation", severity="error", hypervisors={"xenserver"}, basis="DOC + CODE (opt-in)",
      remediation="Enable VT-x/AMD-V in the host's firmware.",
      reference="cloudstack-documentation installguide/hypervisor/xenserver.rst; XcpServerDiscoverer.java")
def xen_hardware_virtualisation(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer hosts list an hvm capability."""
    for host in view.hosts_of("xenserver"):
        if host["hvm"] == 0:  # SQLite stores booleans as 0/1; NULL (unknown) is not a finding
            yield r.finding("host", host["key"], host["target"], f"{host['name']} lists no hvm capability",
                            observed="no hvm-* capability", expected="hvm-3.0-x86_64", cluster=host["cluster_key"])


@rule("host-memory", severity="error", hypervisors={"kvm", "xenserver"}, basis="DOC",
      remediation="Hosts need at least 4 GB of RAM.",
      reference="cloudstack-documentation installguide/overview/_requirements.rst")
def host_memory(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host has at least 4 GB of memory."""
    for host in view.hosts:
        if host["hypervisor"] in ("kvm", "xenserver") and host["memory_bytes"] and host["memory_bytes"] < 4 * 10**9:
            yield r.finding("host", host["key"], host["target"],
                            f"{host['name']} has {host['memory_bytes'] / GiB:.1f} GiB",
                            observed=host["memory_bytes"], expected="≥ 4 GB", cluster=host["cluster_key"])


@rule("time-synchronised", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Install and run chrony (or ntpd) and let it synchronise.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst")
def time_synchronised(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Host clocks are synchronised (NTP/chrony)."""
    for host in view.hosts_of("kvm"):
        if host["time_synced"] == 0:  # 0 = not synchronised; NULL = unknown
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: clock not synchronised",
                            observed="not synchronised", expected="synchronised", cluster=host["cluster_key"])


@rule("static-management-address", severity="warning", hypervisors={"kvm", "xenserver", "vmware"}, basis="DOC",
      remediation="Give the management interface a static address (or a fixed DHCP reservation).",
      reference="cloudstack-documentation installguide/hypervisor/xenserver.rst, kvm.rst")
def static_management_address(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management address is static."""
    for nic in view.host_nics:
        if nic["is_management"] and nic["is_dhcp"]:
            host = view.host_by_key.get((nic["target"], nic["host_key"]), {})
            yield r.finding("host", nic["host_key"], nic["target"],
                            f"{host.get('name', nic['host_key'])}: management {nic['device']} {nic['ip']} is from DHCP",
                            observed="DHCP", expected="static", cluster=host.get("cluster_key"))


@rule("host-state", severity="warning", hypervisors={"kvm", "xenserver", "vmware"}, basis="INF",
      remediation="Bring the host back (or out of maintenance) before relying on the cluster's capacity.",
      reference="CloudStack host states (adminguide/hosts.rst)")
def host_state(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts are connected, not disabled, disconnected or in maintenance."""
    for host in view.hosts:
        if host["state"] not in (None, "connected"):
            yield r.finding("host", host["key"], host["target"], f"{host['name']} is {host['state']}",
                            observed=host["state"], expected="connected", cluster=host["cluster_key"])


# -- Xen pool -----------------------------------------------------------------------------------
@rule("xen-pool-ha", severity="warning", hypervisors={"xenserver"}, basis="DOC",
      remediation="Enable pool HA (xe pool-ha-enable with a heartbeat SR) so the pool elects a new master.",
      reference="cloudstack-documentation releasenotes/compat.rst (4.18–4.22 note)")
def xen_pool_ha(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer pools have pool HA enabled."""
    for cluster in view.clusters:
        if cluster["hypervisor"] == "xenserver" and cluster["ha_enabled"] == 0:
            yield r.finding("cluster", cluster["key"], cluster["target"], f"pool {cluster['name']}: HA is off",
                            observed="off", expected="on", cluster=cluster["key"])


@rule("xen-management-pif", severity="error", hypervisors={"xenserver"}, basis="CODE",
      remediation="Move the management interface off the VLAN / onto the bond itself.",
      reference="apache/cloudstack CitrixResourceBase.java getManagementNetwork")
def xen_management_pif(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The management PIF is neither a VLAN PIF nor a bond member."""
    for nic in view.host_nics:
        host = view.host_by_key.get((nic["target"], nic["host_key"]), {})
        if host.get("hypervisor") == "xenserver" and nic["is_management"] and (nic["vlan"] or nic["bond"]):
            what = f"VLAN {nic['vlan']}" if nic["vlan"] else f"a member of {nic['bond']}"
            yield r.finding("host", nic["host_key"], nic["target"], f"{host.get('name')}: management PIF "
                            f"{nic['device']} is {what}", observed=what, expected="untagged, not a bond member",
                            cluster=host.get("cluster_key"))


@rule("xen-dom0-memory", severity="info", hypervisors={"xenserver"}, basis="BP",
      remediation="Give dom0 2940 MB for hosts that run many VMs.",
      reference="cloudstack-documentation installguide/hypervisor/xenserver.rst")
def xen_dom0_memory(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The control domain has about 2940 MB for large VM counts."""
    for host in view.hosts_of("xenserver"):
        memory = _raw(host).get("dom0_memory_bytes")
        if memory and memory < 2940 * 2**20:
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: dom0 has "
                            f"{memory // 2**20} MB", observed=f"{memory // 2**20} MB", expected="≥ 2940 MB",
                            cluster=host["cluster_key"])


# -- networking ---------------------------------------------------------------------------------
@rule("traffic-labels-on-every-host", severity="error", hypervisors={"kvm", "xenserver", "vmware"}, basis="CODE + DOC",
      remediation="Create the bridge (KVM) or name the network (XenServer: xe network-param-set name-label=…) on "
                  "every host of the cluster, identically.",
      reference="cloudstack-documentation kvm.rst \"Configuring the Networking\"; CitrixResourceBase.java getHostInfo")
def traffic_labels_on_every_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every traffic label declared in [cloudstack.traffic_labels] exists on every host of each cluster."""
    for host in view.hosts:
        present = _host_labels(view, host)
        for traffic, label in view.traffic_labels.items():
            if label not in present:
                yield r.finding("host", host["key"], host["target"],
                                f"{host['name']}: {traffic} label {label!r} not found", observed=", ".join(sorted(present)),
                                expected=label, cluster=host["cluster_key"])


@rule("kvm-agent-devices-exist", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Create the bridges named in agent.properties (private/public/guest.network.device) or fix them.",
      reference="apache/cloudstack AgentProperties.java; LibvirtComputingResource.java configure")
def kvm_agent_devices_exist(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The bridges agent.properties names for private, public and guest traffic exist on the host."""
    for host in view.hosts_of("kvm"):
        devices = {n["device"] for n in view.nics_by_host.get((host["target"], host["key"]), [])}
        if not devices:
            continue
        for column in ("agent_private_device", "agent_public_device", "agent_guest_device"):
            if host[column] and host[column] not in devices:
                yield r.finding("host", host["key"], host["target"],
                                f"{host['name']}: agent.properties {column[6:].replace('_', '.')}={host[column]} "
                                "does not exist", observed="missing", expected=host[column], cluster=host["cluster_key"])


@rule("kvm-link-local-free", severity="warning", hypervisors={"kvm"}, basis="CODE + INF",
      remediation="Keep 169.254.0.0/16 for CloudStack's cloud0 bridge (set NOZEROCONF=yes; no other link-local users).",
      reference="apache/cloudstack BridgeVifDriver.java createControlNetwork; Config.java control.cidr")
def kvm_link_local_free(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The system-VM control network (169.254.0.0/16, bridge cloud0) is not used by anything else on the host."""
    for nic in view.host_nics:
        host = view.host_by_key.get((nic["target"], nic["host_key"]), {})
        if host.get("hypervisor") != "kvm" or nic["device"] == "cloud0":
            continue
        used = [a for a in (nic["ip_addresses"] or "").split(",") if a.startswith("169.254.")]
        if used:
            yield r.finding("host", nic["host_key"], nic["target"], f"{host.get('name')}: {nic['device']} holds "
                            f"link-local {', '.join(used)}", observed=", ".join(used), expected="only on cloud0",
                            cluster=host.get("cluster_key"))


# -- storage ------------------------------------------------------------------------------------
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


# -- estate hygiene -----------------------------------------------------------------------------
@rule("unmanaged-vms", severity="info", hypervisors={"kvm", "xenserver", "vmware"}, basis="BP",
      remediation="Move VMs CloudStack does not manage off its hosts, or import them into CloudStack.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst; choosing_deployment_architecture.rst")
def unmanaged_vms(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """CloudStack hosts run only CloudStack's VMs."""
    for vm in view.vms:
        if vm["cs_role"] == "unmanaged" and not vm["is_template"]:
            yield r.finding("vm", vm["key"], vm["target"], f"{vm['name']} is not a CloudStack instance",
                            observed=vm["name"], expected="i-/r-/s-/v- instance names", cluster=vm["cluster_key"])


@rule("duplicate-mac", severity="error", hypervisors={"kvm", "xenserver", "vmware"}, basis="INF",
      remediation="Give each NIC its own MAC address: duplicates break guest networking.",
      reference="IEEE 802 (MAC addresses are unique on a network); CloudStack allocates MACs per zone")
def duplicate_mac(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """No two VM NICs share a MAC address, across all targets."""
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    uuid_of = {(v["target"], v["key"]): v["uuid"] or v["key"] for v in view.vms}
    for nic in view.vm_nics:
        if nic["mac"]:
            owners[nic["mac"]].add((nic["target"], uuid_of.get((nic["target"], nic["vm_key"]), nic["vm_key"])))
    for mac, vms in owners.items():
        if len(vms) > 1:
            target, vm = sorted(vms)[0]
            yield r.finding("vm", vm, target, f"MAC {mac} is used by {len(vms)} VMs",
                            observed=", ".join(sorted(v for _, v in vms)), expected="one VM per MAC")


@rule("duplicate-uuid", severity="warning", hypervisors={"kvm", "xenserver", "vmware"}, basis="INF",
      remediation="A VM defined on two hosts (stale after a migration) or cloned hosts: remove the stale copy, "
                  "regenerate the cloned host's UUID.",
      reference="CloudStack identifies VMs by UUID/instance name and KVM hosts by guid")
def duplicate_uuid(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """VM and host UUIDs are unique across all targets."""
    for kind, rows in (("vm", view.vms), ("host", view.hosts)):
        seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["uuid"]:
                seen[row["uuid"]].append(row)
        for uuid, dupes in seen.items():
            if len(dupes) > 1:
                yield r.finding(kind, dupes[0]["key"], dupes[0]["target"], f"{kind} UUID {uuid} appears "
                                f"{len(dupes)} times ({', '.join(sorted(str(d['name']) for d in dupes))})",
                                observed=len(dupes), expected=1, cluster=dupes[0].get("cluster_key"))


# -- VMware -------------------------------------------------------------------------------------
@rule("vmware-target-is-vcenter", severity="error", hypervisors={"vmware"}, basis="CODE + DOC",
      remediation="Configure the vCenter that manages the host: CloudStack adds ESXi hosts only through vCenter.",
      reference="cloudstack-documentation installguide/hypervisor/vsphere.rst; VmwareServerDiscoverer.java")
def vmware_target_is_vcenter(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A VMware target is a vCenter, not an ESXi host."""
    for target in view.targets:
        if target["hypervisor"] == "vmware" and "is an ESXi host" in (target["error"] or ""):
            yield r.finding("target", target["name"], target["name"], f"{target['endpoint']} is an ESXi host",
                            observed="ESXi (HostAgent)", expected="vCenter (VirtualCenter)")


@rule("vmware-version-supported", severity="warning", hypervisors={"vmware"}, basis="DOC",
      remediation="Upgrade ESXi/vCenter to a vSphere release the CloudStack release supports.",
      reference="cloudstack-documentation releasenotes/compat.rst at the release's tag")
def vmware_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """ESXi hosts run a vSphere version in the release's support matrix."""
    support = view.release.support
    listed = [".".join(p for p in v.split()[0].split(".")[:2]) for v in support["vmware_vsphere"]]
    dropped = " ".join(x for x in support.get("listed_as_no_longer_supported", []) if x.startswith("vSphere"))
    for host in view.hosts_of("vmware"):
        short = ".".join((host["hypervisor_version"] or "").split(".")[:2])
        if short and short not in listed:
            gone = bool(re.search(rf"(?<![\d.]){re.escape(short)}(?![\d])", dropped))
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: ESXi {host['hypervisor_version']} "
                            f"is {'no longer supported' if gone else 'not listed'} for CloudStack {view.release.asked}",
                            observed=host["hypervisor_version"], expected=", ".join(support["vmware_vsphere"]),
                            severity="error" if gone else None, cluster=host["cluster_key"])


@rule("vmware-hosts-per-cluster", severity="error", hypervisors={"vmware"}, basis="CODE + DB + BP",
      remediation="Split the vSphere cluster: CloudStack refuses clusters above max_hosts_per_cluster, and the docs "
                  "advise at most 8 hosts.",
      reference="apache/cloudstack VmwareManagerImpl.java addHostToPodCluster, VmwareServerDiscoverer.java find; "
                "hypervisor_capabilities.max_hosts_per_cluster; configuration.rst")
def vmware_hosts_per_cluster(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A vSphere cluster has no more hosts than max_hosts_per_cluster for its first host's API version (8 advised)."""
    for cluster in view.clusters:
        if cluster["hypervisor"] != "vmware":
            continue
        hosts = [h for h in view.hosts if h["target"] == cluster["target"] and h["cluster_key"] == cluster["key"]]
        if not hosts:
            continue
        limits = view.release.limits("vmware", _raw(hosts[0]).get("api_version"))
        if limits.max_hosts is not None and len(hosts) > limits.max_hosts:
            yield r.finding("cluster", cluster["key"], cluster["target"], f"cluster {cluster['name']} has "
                            f"{len(hosts)} hosts; {limits.row} allows {limits.max_hosts}", observed=len(hosts),
                            expected=f"≤ {limits.max_hosts}", cluster=cluster["key"])
        elif len(hosts) > 8:
            yield r.finding("cluster", cluster["key"], cluster["target"], f"cluster {cluster['name']} has "
                            f"{len(hosts)} hosts", observed=len(hosts), expected="≤ 8 (advised)", severity="warning",
                            cluster=cluster["key"])


@rule("vmware-management-portgroup", severity="error", hypervisors={"vmware"}, basis="CODE + DOC",
      remediation="Give every host a VMkernel NIC on the management port group (vmware.management.portgroup, default "
                  "\"Management Network\"), named the same on all hosts.",
      reference="apache/cloudstack VmwareResource.java fillHostNetworkInfo / HostMO.getHyperHostNetworkSummary; "
                "Config.java vmware.management.portgroup")
def vmware_management_portgroup(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every ESXi host has a VMkernel NIC on the "Management Network" port group."""
    for host in view.hosts_of("vmware"):
        vmks = [n for n in view.nics_by_host.get((host["target"], host["key"]), []) if n["kind"] == "vmk"]
        if not any(n["bond"] == "Management Network" for n in vmks):
            yield r.finding("host", host["key"], host["target"], f"{host['name']}: no VMkernel NIC on "
                            "\"Management Network\"", observed=", ".join(f"{n['device']} on {n['bond']}" for n in vmks)
                            or "no VMkernel NIC", expected="a vmk on Management Network", cluster=host["cluster_key"])


@rule("vmware-ha-drs", severity="info", hypervisors={"vmware"}, basis="CODE + DOC",
      remediation="Enable vSphere HA (CloudStack relies on it for VMware, NativeHA) and consider DRS.",
      reference="apache/cloudstack VmwareServerDiscoverer.java (NativeHA); choosing_deployment_architecture.rst")
def vmware_ha_drs(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """vSphere HA is on for CloudStack's clusters (CloudStack leaves VMware HA to vSphere); DRS state is reported."""
    for cluster in view.clusters:
        if cluster["hypervisor"] != "vmware":
            continue
        for what, value in (("vSphere HA", cluster["ha_enabled"]), ("DRS", cluster["drs_enabled"])):
            if not value:
                yield r.finding("cluster", cluster["key"], cluster["target"], f"cluster {cluster['name']}: {what} is "
                                "off", observed="off", expected="on", cluster=cluster["key"])


# -- helpers ------------------------------------------------------------------------------------
def _raw(row: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(row["raw_json"])) if row.get("raw_json") else {}


def _target_kind(view: InventoryView, target: str) -> str | None:
    return next((t["hypervisor"] for t in view.targets if t["name"] == target), None)


def _host_labels(view: InventoryView, host: dict[str, Any]) -> set[str]:
    """What a traffic label can name on this host: bridges (KVM), network name-labels (Xen), vSwitches, port
    groups and distributed switches/port groups (VMware; dvSwitch membership per host is not read)."""
    labels = set()
    for nic in view.nics_by_host.get((host["target"], host["key"]), []):
        network = view.network_by_key.get((nic["target"], nic["network_key"]))
        if nic["kind"] in ("bridge", "ovs", "vswitch"):
            labels.add(nic["device"])
        if network is not None:
            labels.add(network["name"])
    if host["hypervisor"] == "vmware":
        labels |= {n["name"] for n in view.networks
                   if n["target"] == host["target"] and n["kind"] in ("dvswitch", "dvportgroup")}
    return labels


def _odd_ones_out(r: Rule, hosts: list[dict[str, Any]], column: str, target: str, cluster: str,
                  severity: str | None) -> Iterator[Finding]:
    values = Counter(h[column] for h in hosts if h[column] is not None)
    if len(values) < 2:
        return
    common = values.most_common(1)[0][0]
    for host in hosts:
        if host[column] is not None and host[column] != common:
            shown = host[column] if len(str(host[column])) < 60 else _flag_delta(host[column], common)
            yield r.finding("host", host["key"], target, f"{host['name']}: {column} differs from its cluster mates",
                            observed=shown, expected=common if len(str(common)) < 60 else "the cluster's common set",
                            severity=severity, cluster=cluster)


def _flag_delta(mine: str, common: str) -> str:
    a, b = set(mine.split()), set(common.split())
    return f"missing {' '.join(sorted(b - a)) or '-'}; extra {' '.join(sorted(a - b)) or '-'}"
