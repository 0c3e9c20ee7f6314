"""Host fitness: hosts and clusters fit to run CloudStack's VMs (virtualisation, memory, clock,
state, dom0, HA)."""

from __future__ import annotations

from collections.abc import Iterator

from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, rule
from inventory.rules.common import raw_int

GiB = 2**30


@rule("kvm-hardware-virtualisation", severity="error", hypervisors={"kvm"}, basis="CODE",
      remediation="Enable VT-x/AMD-V in the BIOS and load kvm_intel or kvm_amd so /dev/kvm exists.",
      reference="apache/cloudstack LibvirtComputingResource.java IsHVMEnabled; LibvirtServerDiscoverer.java find")
def kvm_hardware_virtualisation(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """KVM hosts expose hardware virtualisation: an hvm guest type in libvirt and /dev/kvm."""
    for host in view.hosts_of("kvm"):
        missing = [what for what, ok in (("libvirt offers no hvm guests", host.libvirt_hvm),
                                         ("/dev/kvm is missing", host.dev_kvm)) if ok is False]
        if missing:
            yield r.finding(host, f"{host.name}: {'; '.join(missing)}", observed="; ".join(missing),
                            expected="hvm guests and /dev/kvm")


@rule("xen-hardware-virtualisation", severity="error", hypervisors={"xenserver"}, basis="DOC + CODE (opt-in)",
      remediation="Enable VT-x/AMD-V in the host's firmware.",
      reference="cloudstack-documentation installguide/hypervisor/xenserver.rst; XcpServerDiscoverer.java")
def xen_hardware_virtualisation(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer hosts list an hvm capability."""
    for host in view.hosts_of("xenserver"):
        if host.hvm is False:  # None (unknown) is not a finding
            yield r.finding(host, f"{host.name} lists no hvm capability", observed="no hvm-* capability",
                            expected="hvm-3.0-x86_64")


@rule("host-memory", severity="error", hypervisors={"kvm", "xenserver"}, basis="DOC",
      remediation="Hosts need at least 4 GB of RAM.",
      reference="cloudstack-documentation installguide/overview/_requirements.rst")
def host_memory(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host has at least 4 GB of memory."""
    for host in view.hosts:
        if host.hypervisor in ("kvm", "xenserver") and host.memory_bytes and host.memory_bytes < 4 * 10**9:
            yield r.finding(host, f"{host.name} has {host.memory_bytes / GiB:.1f} GiB", observed=host.memory_bytes,
                            expected="≥ 4 GB")


@rule("time-synchronised", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Install and run chrony (or ntpd) and let it synchronise.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst")
def time_synchronised(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Host clocks are synchronised (NTP/chrony)."""
    for host in view.hosts_of("kvm"):
        if host.time_synced is False:  # None (unknown) is not a finding
            yield r.finding(host, f"{host.name}: clock not synchronised", observed="not synchronised",
                            expected="synchronised")


@rule("host-state", severity="warning", hypervisors=ANY_KIND, basis="INF",
      remediation="Bring the host back (or out of maintenance) before relying on the cluster's capacity.",
      reference="CloudStack host states (adminguide/hosts.rst)")
def host_state(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts are connected, not disabled, disconnected or in maintenance."""
    for host in view.hosts:
        if host.state not in (None, "connected"):
            yield r.finding(host, f"{host.name} is {host.state}", observed=host.state, expected="connected")


@rule("xen-dom0-memory", severity="info", hypervisors={"xenserver"}, basis="BP",
      remediation="Give dom0 2940 MB for hosts that run many VMs.",
      reference="cloudstack-documentation installguide/hypervisor/xenserver.rst")
def xen_dom0_memory(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The control domain has about 2940 MB for large VM counts."""
    for host in view.hosts_of("xenserver"):
        memory = raw_int(host, "dom0_memory_bytes")
        if memory and memory < 2940 * 2**20:
            yield r.finding(host, f"{host.name}: dom0 has {memory // 2**20} MB", observed=f"{memory // 2**20} MB",
                            expected="≥ 2940 MB")


@rule("xen-pool-ha", severity="warning", hypervisors={"xenserver"}, basis="DOC",
      remediation="Enable pool HA (xe pool-ha-enable with a heartbeat SR) so the pool elects a new master.",
      reference="cloudstack-documentation releasenotes/compat.rst (4.18–4.22 note)")
def xen_pool_ha(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """XenServer pools have pool HA enabled."""
    for cluster in view.clusters_of("xenserver"):
        if cluster.ha_enabled is False:
            yield r.finding(cluster, f"pool {cluster.name}: HA is off", observed="off", expected="on")


@rule("vmware-ha-drs", severity="info", hypervisors={"vmware"}, basis="CODE + DOC",
      remediation="Enable vSphere HA (CloudStack relies on it for VMware, NativeHA) and consider DRS.",
      reference="apache/cloudstack VmwareServerDiscoverer.java (NativeHA); choosing_deployment_architecture.rst")
def vmware_ha_drs(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """vSphere HA is on for CloudStack's clusters (CloudStack leaves VMware HA to vSphere); DRS state is reported."""
    for cluster in view.clusters_of("vmware"):
        for what, value in (("vSphere HA", cluster.ha_enabled), ("DRS", cluster.drs_enabled)):
            if not value:
                yield r.finding(cluster, f"cluster {cluster.name}: {what} is off", observed="off", expected="on")
