"""Homogeneity: the hosts of one cluster agree (CPU, OS, hypervisor and libvirt versions), so VMs
can live-migrate between them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from inventory.model import Host
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, rule
from inventory.rules.common import odd_ones_out

EL_FAMILY = {"rocky", "rhel", "ol", "almalinux"}


@rule("cluster-same-cpu", severity="warning", hypervisors=ANY_KIND, basis="DOC",
      remediation="Keep one CPU vendor and model per cluster (live migration needs a common CPU feature set).",
      reference="cloudstack-documentation installguide/overview/_requirements.rst; hypervisor pages")
def cluster_same_cpu(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """All hosts of a cluster have the same CPU vendor, model and feature flags."""
    for group in view.host_groups:
        if group.kind == "vmware" and group.names_no_cluster:
            continue  # standalone ESXi hosts are no cluster (KVM hosts of a target without one are)
        for column, severity in (("cpu_vendor", "error"), ("cpu_model", None), ("cpu_flags", None)):
            yield from odd_ones_out(r, group.hosts, column, group.key, severity)


@rule("kvm-cluster-same-os", severity="error", hypervisors={"kvm"}, basis="DOC + CODE",
      remediation="Run one distribution (and version) on every host of a KVM cluster.",
      reference="apache/cloudstack LibvirtServerDiscoverer.java createHostVOForConnectedAgent; kvm.rst")
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
        yield from odd_ones_out(r, known, "os_version", group.key, "warning")


@rule("cluster-same-hypervisor-version", severity="warning", hypervisors={"xenserver", "vmware"}, basis="DOC",
      remediation="Finish the upgrade: one product version (and build) per pool or vSphere cluster.",
      reference="cloudstack-documentation installguide/configuration.rst (homogeneous clusters); _xenserver_upg.rst")
def cluster_same_hypervisor_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """One hypervisor product and version per cluster (a XenServer pool, a vSphere cluster)."""
    for kind in ("xenserver", "vmware"):
        for group in view.groups_of(kind):
            if kind == "vmware" and group.names_no_cluster:
                continue
            yield from odd_ones_out(r, group.hosts, "product_name", group.key, "error")
            yield from odd_ones_out(r, group.hosts, "hypervisor_version", group.key, None)
            yield from odd_ones_out(r, group.hosts, "build", group.key, None)


@rule("kvm-cluster-same-versions", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Upgrade libvirt and QEMU to the same versions on every host of the cluster.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst (live migration)")
def kvm_cluster_same_versions(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same libvirt and QEMU versions."""
    for group in view.groups_of("kvm"):
        yield from odd_ones_out(r, group.hosts, "libvirt_version", group.key, None)
        yield from odd_ones_out(r, group.hosts, "hypervisor_version", group.key, None)
