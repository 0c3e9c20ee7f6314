"""Homogeneity: the hosts of one cluster agree (CPU, OS, hypervisor and libvirt versions), so VMs
can live-migrate between them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from inventory.model import Host
from inventory.releases import Release
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import odd_ones_out

ALL_TAGS = "4.18.0.0–4.22.0.1"
LIBVIRT_DISCOVERER = "server/src/main/java/com/cloud/hypervisor/kvm/discoverer/LibvirtServerDiscoverer.java"


@rule("cluster-same-cpu", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/overview/_requirements.rst", "72-73", ALL_TAGS),
               doc("installguide/hypervisor/kvm.rst", "56-57", ALL_TAGS + " (58-59 at 4.18.0.0–4.20.1.0, "
                                                                          "58-59 at 4.21.0.0)"),
               doc("installguide/hypervisor/xenserver.rst", "63-64", ALL_TAGS + " (61-62 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/hypervisor/vsphere.rst", "77-78", ALL_TAGS)],
      evidence=["hosts.cpu_vendor", "hosts.cpu_model", "hosts.cpu_sockets", "hosts.cpu_cores", "hosts.cpu_flags"],
      remediation="Keep one CPU type, count and feature set per cluster (live migration needs a common CPU).")
def cluster_same_cpu(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """All hosts of a cluster have the same CPU type, count and feature flags.

    Type is vendor and model; count, which the documentation does not define further, is compared as
    sockets and cores per socket.
    """
    for group in view.host_groups:
        if group.kind == "vmware" and group.names_no_cluster:
            continue  # standalone ESXi hosts are no cluster (KVM hosts of a target without one are)
        for column in ("cpu_vendor", "cpu_model", "cpu_sockets", "cpu_cores", "cpu_flags"):
            yield from odd_ones_out(r, group.hosts, column, group.key)


@rule("kvm-cluster-same-os", hypervisors={"kvm"}, basis="CODE",
      sources=[code(LIBVIRT_DISCOVERER, "createHostVOForConnectedAgent (Host.OS of the new host vs the cluster's, "
                    "ignoring case)", "≤4.11–4.22"),
               code(LIBVIRT_DISCOVERER, "isHostOsCompatibleWithOtherHost (first word alone accepted: "
                    "apache/cloudstack#7620; Rocky/Red Hat/Oracle/Alma as one: apache/cloudstack#8641)",
                    "first word 4.18.1.0–4.22; EL family 4.19.1.0–4.22 (release inferred from the PR dates)")],
      evidence=["hosts.host_os", "hosts.os_name"],
      remediation="Run one distribution on every host of a KVM cluster.")
def kvm_cluster_same_os(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster report the same Host.OS, as CloudStack compares it.

    Host.OS is what the agent reports: /etc/redhat-release's name (up to "release"), else lsb-release's
    DISTRIB_ID, else os-release's NAME — so an Oracle Linux whose redhat-release names Red Hat Enterprise
    Linux counts as RHEL. Compared ignoring case; from 4.18.1.0 a name that is only the first word of the
    other's is accepted, and from 4.19.1.0 Rocky Linux, Red Hat Enterprise Linux, Oracle Linux and AlmaLinux
    are compatible. Versions are not compared by code (see kvm-cluster-same-os-version).
    """
    for group in view.groups_of("kvm"):
        named = [(h, h.host_os or h.os_name) for h in group.hosts if h.host_os or h.os_name]
        names = Counter(str(name) for _, name in named)
        if len(names) < 2:
            continue
        common = names.most_common(1)[0][0]
        for host, name in named:
            if not host_os_compatible(common, str(name), view.release):
                yield r.finding(host, f"{host.name} reports Host.OS {name!r}, its cluster {common!r}", observed=name,
                                expected=common, cluster=group.key)


EL_FIRST_WORDS = {"rocky", "red", "oracle", "almalinux"}


def host_os_compatible(in_cluster: str, new: str, release: Release) -> bool:
    """Whether CloudStack adds a host reporting ``new`` to a cluster whose hosts report ``in_cluster``."""
    a, b = in_cluster.strip().lower(), new.strip().lower()
    if a == b:
        return True
    first_a, first_b = (a.split() or [""])[0], (b.split() or [""])[0]
    if release.at_least("4.18.1.0") and (a == first_b or b == first_a):
        return True
    return release.at_least("4.19.1.0") and first_a in EL_FIRST_WORDS and first_b in EL_FIRST_WORDS


@rule("cluster-same-arch", hypervisors=ANY_KIND, basis="CODE", since="4.20.0.0",
      sources=[code("engine/orchestration/src/main/java/com/cloud/agent/manager/AgentManagerImpl.java",
                    "checkHostArchOnCluster", "4.20.0.0–4.22"),
               doc("installguide/configuration.rst", "1036", "4.20.0.0–4.22.0.1 (1016 at 4.20.0.0, 1031 at "
                                                             "4.20.1.0–4.20.2.0, 1043 at 4.20.3.0, 1033 at 4.21.0.0)"),
               doc("installguide/configuration.rst", "1045-1046", "4.20.0.0–4.22.0.1 (1025-1026 at 4.20.0.0, 1040-1041 at "
                                                                  "4.20.1.0–4.20.2.0, 1052-1053 at 4.20.3.0, 1042-1043 at "
                                                                  "4.21.0.0)")],
      evidence=["hosts.cpu_arch"],
      remediation="Keep one CPU architecture per cluster (x86_64 or aarch64); put other hosts in a cluster of theirs.")
def cluster_same_arch(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """All hosts of a cluster have the cluster's CPU architecture (from 4.20, CloudStack refuses others)."""
    for group in view.host_groups:
        if group.kind == "vmware" and group.names_no_cluster:
            continue
        yield from odd_ones_out(r, group.hosts, "cpu_arch", group.key)


@rule("kvm-guest-cpu-consistent", hypervisors={"kvm"}, basis="BP",
      sources=[doc("installguide/hypervisor/kvm.rst", "349-436", "4.18.0.0–4.22.0.1 (the section \"Configure CPU model for "
                                                                 "KVM guest(s)\", each tag's own text: 215-289 at "
                                                                 "4.18.0.0–4.19.3.0, 316-390 at 4.20.0.0–4.20.1.0, 314-388 "
                                                                 "at 4.20.2.0, 361-435 at 4.20.3.0, 351-438 at 4.21.0.0)")],
      evidence=["hosts.raw_json.agent_properties.guest.cpu.mode", "hosts.raw_json.agent_properties.guest.cpu.model",
                "hosts.raw_json.agent_properties.guest.cpu.features"],
      remediation="Set the same guest.cpu.mode (host-model, or custom with one guest.cpu.model) and guest.cpu.features "
                  "in agent.properties on every host of the cluster, and restart the agents.")
def kvm_guest_cpu_consistent(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of a KVM cluster give guests the same CPU (guest.cpu.mode, .model, .features in agent.properties).

    The guide's reason to set a CPU model is "a consistent default CPU across all machines"; a guest
    started on one CPU model may not live-migrate to a host that offers another.
    """
    def guest_cpu(host: Host) -> str:
        props = (host.raw_json or {}).get("agent_properties") or {}
        return " ".join(f"{k}={props.get(k) or '-'}" for k in ("guest.cpu.mode", "guest.cpu.model",
                                                                 "guest.cpu.features"))
    for group in view.groups_of("kvm"):
        known = [h for h in group.hosts if (h.raw_json or {}).get("agent_properties")]
        values = Counter(guest_cpu(h) for h in known)
        if len(values) < 2:
            continue
        common = values.most_common(1)[0][0]
        for host in known:
            if guest_cpu(host) != common:
                yield r.finding(host, f"{host.name}: guest CPU settings differ from its cluster mates",
                                observed=guest_cpu(host), expected=common, cluster=group.key)


@rule("kvm-cluster-same-os-version", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("installguide/hypervisor/kvm.rst", "53-54", ALL_TAGS + " (55-56 at 4.18.0.0–4.20.1.0, "
                                                                          "55-56 at 4.21.0.0)")],
      evidence=["hosts.os_version"],
      remediation="Run the same distribution version on every host of a KVM cluster.")
def kvm_cluster_same_os_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same distribution version (CloudStack's code compares only the name)."""
    for group in view.groups_of("kvm"):
        yield from odd_ones_out(r, [h for h in group.hosts if h.os_id], "os_version", group.key)


@rule("cluster-same-hypervisor-version", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("installguide/hypervisor/xenserver.rst", "768", ALL_TAGS + " (766 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/configuration.rst", "1036", "4.20.0.0–4.22.0.1 (identical hypervisor type; 1016 at "
                                                             "4.20.0.0, 1031 at 4.20.1.0–4.20.2.0, 1043 at 4.20.3.0, 1033 "
                                                             "at 4.21.0.0)")],
      evidence=["hosts.product_name", "hosts.hypervisor_version", "hosts.build"],
      remediation="Finish the upgrade: one product version (and build) on every host of the pool.")
def cluster_same_hypervisor_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host of a XenServer pool runs the same product and version."""
    for group in view.groups_of("xenserver"):
        for column in ("product_name", "hypervisor_version", "build"):
            yield from odd_ones_out(r, group.hosts, column, group.key)


@rule("xen-pool-same-updates", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("installguide/hypervisor/xenserver.rst", "54-61", ALL_TAGS + " (52-59 at 4.18.0.0–4.20.0.0)"),
               doc("installguide/overview/_requirements.rst", "67", ALL_TAGS)],
      evidence=["hosts.applied_updates", "hosts.raw_json.software"],
      remediation="Apply the same updates and hotfixes to every host of the pool (the vendor's latest).")
def xen_pool_same_updates(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host of a XenServer pool has the same updates and hotfixes applied.

    The documentation asks for the vendor's latest hotfixes on every host; which are the latest is not
    knowable offline, but a pool whose hosts differ — in applied updates, or in the Xen, XAPI or dom0
    kernel versions XCP-ng's package updates change — has one host behind.
    """
    for group in view.groups_of("xenserver"):
        yield from odd_ones_out(r, group.hosts, "applied_updates", group.key)
        for component in ("xen", "xapi", "linux"):
            values = Counter(v for h in group.hosts if (v := ((h.raw_json or {}).get("software") or {}).get(component)))
            if len(values) < 2:
                continue
            common = values.most_common(1)[0][0]
            for host in group.hosts:
                value = ((host.raw_json or {}).get("software") or {}).get(component)
                if value and value != common:
                    yield r.finding(host, f"{host.name}: {component} {value}, its pool mates {common}", observed=value,
                                    expected=common, cluster=group.key)


@rule("vmware-cluster-same-version", hypervisors={"vmware"}, basis="INF",
      sources=[doc("installguide/configuration.rst", "1036", "4.20.0.0–4.22.0.1 (identical hypervisor type only; 1016 at "
                                                             "4.20.0.0, 1031 at 4.20.1.0–4.20.2.0, 1043 at 4.20.3.0, 1033 "
                                                             "at 4.21.0.0)")],
      evidence=["hosts.product_name", "hosts.hypervisor_version", "hosts.build"],
      remediation="Finish the upgrade: one ESXi version (and build) per vSphere cluster.")
def vmware_cluster_same_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host of a vSphere cluster runs the same ESXi version and build.

    CloudStack's documentation asks only for one hypervisor type per cluster; one version per vSphere
    cluster is inferred (mixed builds are an upgrade left half done).
    """
    for group in view.groups_of("vmware"):
        if group.names_no_cluster:
            continue
        for column in ("product_name", "hypervisor_version", "build"):
            yield from odd_ones_out(r, group.hosts, column, group.key)


@rule("kvm-cluster-same-versions", hypervisors={"kvm"}, basis="INF",
      sources=[doc("installguide/hypervisor/kvm.rst", "1632-1638",
                   ALL_TAGS + " (\"Live Migration\" speaks only of the guest bridge; 1422-1428 at 4.18.0.0–4.18.2.5, "
                              "1468-1474 at 4.19.0.0–4.19.3.0, 1580-1586 at 4.20.0.0, 1586-1592 at 4.20.1.0, 1648-1654 at "
                              "4.20.2.0, 1698-1704 at 4.20.3.0, 1634-1640 at 4.21.0.0)")],
      evidence=["hosts.libvirt_version", "hosts.hypervisor_version"],
      remediation="Upgrade libvirt and QEMU to the same versions on every host of the cluster.")
def kvm_cluster_same_versions(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same libvirt and QEMU versions.

    No CloudStack text asks for it: live migration to an older QEMU or libvirt can fail, so a
    cluster with mixed versions is reported as an inference.
    """
    for group in view.groups_of("kvm"):
        yield from odd_ones_out(r, group.hosts, "libvirt_version", group.key)
        yield from odd_ones_out(r, group.hosts, "hypervisor_version", group.key)
