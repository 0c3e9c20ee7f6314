"""Homogeneity: the hosts of one cluster agree (CPU, OS, hypervisor and libvirt versions), so VMs
can live-migrate between them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from inventory.model import Host
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import odd_ones_out

EL_FAMILY = {"rocky", "rhel", "ol", "almalinux"}
ALL_TAGS = "4.18.0.0–4.22.0.1"
LIBVIRT_DISCOVERER = "server/src/main/java/com/cloud/hypervisor/kvm/discoverer/LibvirtServerDiscoverer.java"


@rule("cluster-same-cpu", hypervisors=ANY_KIND, basis="DOC",
      sources=[doc("installguide/overview/_requirements.rst", "72-73", ALL_TAGS),
               doc("installguide/hypervisor/kvm.rst", "56-57", ALL_TAGS + " (58-59 before 4.22)"),
               doc("installguide/hypervisor/xenserver.rst", "63-64", ALL_TAGS + " (61-62 before 4.22)"),
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
      sources=[code(LIBVIRT_DISCOVERER, "createHostVOForConnectedAgent (Host.OS of the new host vs the cluster's)",
                    "≤4.11–4.22; Rocky/RHEL/Oracle/Alma compatible from 4.19.1.0 (apache/cloudstack#8641)")],
      evidence=["hosts.os_id", "hosts.os_name"],
      remediation="Run one distribution on every host of a KVM cluster.")
def kvm_cluster_same_os(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same distribution (EL rebuilds count as one since 4.19.1.0)."""
    el_compatible = view.release.at_least("4.19.1.0")

    def family(host: Host) -> str | None:
        return "el" if el_compatible and host.os_id in EL_FAMILY else host.os_id
    for group in view.groups_of("kvm"):
        known = [h for h in group.hosts if h.os_id]
        families = Counter(family(h) for h in known)
        if len(families) > 1:
            common = families.most_common(1)[0][0]
            for h in known:
                if family(h) != common:
                    yield r.finding(h, f"{h.name} runs {h.os_name}, its cluster mates {common}", observed=h.os_name,
                                    expected=common, cluster=group.key)


@rule("kvm-cluster-same-os-version", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("installguide/hypervisor/kvm.rst", "53-54", ALL_TAGS + " (55-56 before 4.22)")],
      evidence=["hosts.os_version"],
      remediation="Run the same distribution version on every host of a KVM cluster.")
def kvm_cluster_same_os_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same distribution version (CloudStack's code compares only the name)."""
    for group in view.groups_of("kvm"):
        yield from odd_ones_out(r, [h for h in group.hosts if h.os_id], "os_version", group.key)


@rule("cluster-same-hypervisor-version", hypervisors={"xenserver"}, basis="DOC",
      sources=[doc("installguide/hypervisor/xenserver.rst", "768", ALL_TAGS + " (766 before 4.22)"),
               doc("installguide/configuration.rst", "1036", "4.20.0.0–4.22.0.1 (identical hypervisor type)")],
      evidence=["hosts.product_name", "hosts.hypervisor_version", "hosts.build"],
      remediation="Finish the upgrade: one product version (and build) on every host of the pool.")
def cluster_same_hypervisor_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Every host of a XenServer pool runs the same product and version."""
    for group in view.groups_of("xenserver"):
        for column in ("product_name", "hypervisor_version", "build"):
            yield from odd_ones_out(r, group.hosts, column, group.key)


@rule("vmware-cluster-same-version", hypervisors={"vmware"}, basis="INF",
      sources=[doc("installguide/configuration.rst", "1036", "4.20.0.0–4.22.0.1 (identical hypervisor type only)")],
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
                   ALL_TAGS + " (\"Live Migration\" speaks only of the guest bridge)")],
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
