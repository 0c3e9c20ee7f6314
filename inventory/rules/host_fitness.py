"""Host fitness: hosts and clusters fit to run CloudStack's VMs (virtualisation, memory, clock,
state, dom0, HA)."""

from __future__ import annotations

from collections.abc import Iterator

from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import raw_int

GiB = 2**30
ALL_TAGS = "4.18.0.0–4.22.0.1"


@rule("kvm-hardware-virtualisation", hypervisors={"kvm"}, basis="CODE",
      sources=[code("plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/resource/"
                    "LibvirtComputingResource.java", "configure / isHvmEnabled (the agent refuses to start)",
                    "≤4.11–4.22"),
               code("server/src/main/java/com/cloud/hypervisor/kvm/discoverer/LibvirtServerDiscoverer.java",
                    "find (/dev/kvm checked over SSH)", "4.14.0.0–4.22")],
      evidence=["hosts.libvirt_hvm", "hosts.dev_kvm"],
      remediation="Enable VT-x/AMD-V in the BIOS and load kvm_intel or kvm_amd so /dev/kvm exists.")
def kvm_hardware_virtualisation(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """KVM hosts expose hardware virtualisation: an hvm guest type in libvirt and /dev/kvm."""
    for host in view.hosts_of("kvm"):
        missing = [what for what, ok in (("libvirt offers no hvm guests", host.libvirt_hvm),
                                         ("/dev/kvm is missing", host.dev_kvm)) if ok is False]
        if missing:
            yield r.finding(host, f"{host.name}: {'; '.join(missing)}", observed="; ".join(missing),
                            expected="hvm guests and /dev/kvm")


@rule("xen-hardware-virtualisation", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("installguide/hypervisor/xenserver.rst", "52", ALL_TAGS + " (50 at 4.18.0.0–4.20.0.0)")],
      evidence=["hosts.hvm", "hosts.raw_json.capabilities"],
      remediation="Enable VT-x/AMD-V in the host's firmware.")
def xen_hardware_virtualisation(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer hosts list an hvm capability.

    CloudStack's own check (XcpServerDiscoverer, setting xenserver.check.hvm) is off unless an operator
    turns it on, so this rests on the documentation.
    """
    for host in view.hosts_of("xenserver"):
        if host.hvm is False:  # None (unknown) is not a finding
            yield r.finding(host, f"{host.name} lists no hvm capability", observed="no hvm-* capability",
                            expected="hvm-3.0-x86_64")


@rule("host-memory", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/overview/_requirements.rst", "61", ALL_TAGS),
               doc("installguide/hypervisor/kvm.rst", "63", ALL_TAGS + " (65 at 4.18.0.0–4.20.1.0, 65 at 4.21.0.0)"),
               doc("installguide/hypervisor/xenserver.rst", "72", ALL_TAGS + " (70 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/hypervisor/vsphere.rst", "84", ALL_TAGS)],
      evidence=["hosts.memory_bytes"],
      remediation="Hosts need at least 4 GB of RAM.")
def host_memory(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host has at least 4 GB of memory."""
    for host in view.hosts:
        if host.memory_bytes and host.memory_bytes < 4 * 10**9:
            yield r.finding(host, f"{host.name} has {host.memory_bytes / GiB:.1f} GiB", observed=host.memory_bytes,
                            expected="≥ 4 GB")


@rule("host-local-disk", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/overview/_requirements.rst", "63", ALL_TAGS),
               doc("installguide/hypervisor/vsphere.rst", "86", ALL_TAGS),
               doc("installguide/hypervisor/xenserver.rst", "74", ALL_TAGS + " (72 at 4.18.0.0–4.20.0.0)")],
      evidence=["hosts.local_disk_bytes"],
      remediation="Give the host at least 36 GB of local disk.")
def host_local_disk(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts have at least 36 GB of local disk.

    Known where the hypervisor reports its local disks (ESXi: local SCSI disks); XAPI shows only the SRs on a
    XenServer host's disk and KVM hosts are not asked, so those are not judged.
    """
    for host in view.hosts:
        if host.local_disk_bytes is not None and host.local_disk_bytes < 36 * 10**9:
            yield r.finding(host, f"{host.name} has {host.local_disk_bytes / 10**9:.1f} GB of local disk",
                            observed=host.local_disk_bytes, expected="≥ 36 GB")


@rule("time-synchronised", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("installguide/hypervisor/kvm.rst", "131-135", ALL_TAGS + " (133-137 at 4.18.0.0–4.20.1.0, 133-137 at "
                                                                            "4.21.0.0)")],
      evidence=["hosts.time_synced"],
      remediation="Install and run chrony (or ntpd) and let it synchronise.")
def time_synchronised(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Host clocks are synchronised (NTP/chrony)."""
    for host in view.hosts_of("kvm"):
        if host.time_synced is False:  # None (unknown) is not a finding
            yield r.finding(host, f"{host.name}: clock not synchronised", observed="not synchronised",
                            expected="synchronised")


@rule("host-state", hypervisors=ANY_KIND, basis="INF",
      sources=[doc("adminguide/hosts.rst", "24-31", ALL_TAGS + " (a host in maintenance takes no new instances)")],
      evidence=["hosts.state"],
      remediation="Bring the host back (or out of maintenance) before relying on the cluster's capacity.")
def host_state(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts are connected, not disabled, disconnected or in maintenance."""
    for host in view.hosts:
        if host.state not in (None, "connected"):
            yield r.finding(host, f"{host.name} is {host.state}", observed=host.state, expected="connected")


@rule("xen-dom0-memory", hypervisors={"xenserver"}, basis="BP",
      sources=[doc("installguide/hypervisor/xenserver.rst", "108-110", ALL_TAGS + " (106-108 at 4.18.0.0–4.20.0.0)")],
      evidence=["hosts.raw_json.dom0_memory_bytes"],
      remediation="Give dom0 2940 MB for hosts that run many VMs.")
def xen_dom0_memory(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The control domain has about 2940 MB for large VM counts."""
    for host in view.hosts_of("xenserver"):
        memory = raw_int(host, "dom0_memory_bytes")
        if memory and memory < 2940 * 2**20:
            yield r.finding(host, f"{host.name}: dom0 has {memory // 2**20} MB", observed=f"{memory // 2**20} MB",
                            expected="≥ 2940 MB")


@rule("xen-pool-ha", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("releasenotes/compat.rst", "61", ALL_TAGS + " (57 at 4.18.0.0–4.18.2.5, 59 at 4.19.0.0–4.20.0.0, 62 at "
                                                               "4.20.1.0, 63 at 4.20.2.0–4.21.0.0)"),
               doc("upgrading/upgrade/_xenserver_upg.rst", "21-29", ALL_TAGS)],
      evidence=["clusters.ha_enabled"],
      remediation="Enable pool HA (xe pool-ha-enable with a heartbeat SR) so the pool elects a new master.")
def xen_pool_ha(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer pools have pool HA enabled.

    The release notes call it required: since 4.4 CloudStack no longer promotes a new pool master, XenServer
    HA does. No code refuses a pool without it, so the finding is a warning, not an error.
    """
    for cluster in view.clusters_of("xenserver"):
        if cluster.ha_enabled is False:
            yield r.finding(cluster, f"pool {cluster.name}: HA is off", observed="off", expected="on")


@rule("xen-vm-ha-off", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("upgrading/upgrade/_xenserver_upg.rst", "21-26", ALL_TAGS)],
      evidence=["vms.raw_json.ha_restart_priority"],
      remediation="Clear XenServer HA on the VMs (xe vm-param-set uuid=… ha-restart-priority=): CloudStack restarts "
                  "the instances of HA offerings itself.")
def xen_vm_ha_off(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer HA protects the pool master only, not VMs (CloudStack honours HA for its instances)."""
    for vm in view.vms:
        priority = (vm.raw_json or {}).get("ha_restart_priority")
        if priority and view.kind_of_target(vm.target) == "xenserver":
            yield r.finding(vm, f"{vm.name} has XenServer HA restart priority {priority!r}", observed=priority,
                            expected="none")


@rule("vmware-cluster-ha", hypervisors={"vmware"}, basis="INF",
      sources=[code("plugins/hypervisors/vmware/src/main/java/com/cloud/hypervisor/vmware/VmwareServerDiscoverer.java",
                    "find (dasConfig.enabled → cluster detail NativeHA)", "≤4.11–4.22")],
      evidence=["clusters.ha_enabled"],
      remediation="Enable vSphere HA on the cluster: CloudStack records it as NativeHA and leaves VM restarts on VMware "
                  "to vSphere.")
def vmware_cluster_ha(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """vSphere HA is on for CloudStack's vSphere clusters.

    CloudStack reads the cluster's HA flag when adding it (NativeHA); that VMs of HA offerings on a
    cluster without it are not restarted is inferred. (DRS, once reported here, is asked for by no
    CloudStack text; this rule was vmware-ha-drs.)
    """
    for cluster in view.clusters_of("vmware"):
        if cluster.ha_enabled is not True:  # unset counts as off, as CloudStack reads dasConfig.enabled
            yield r.finding(cluster, f"cluster {cluster.name}: vSphere HA is off", observed="off", expected="on")
