"""Homogeneity: the hosts of one cluster agree (CPU, OS, hypervisor and libvirt versions), so VMs
can live-migrate between them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from inventory.rulebook import Finding, InventoryView, Rule, rule
from inventory.rules.common import odd_ones_out

EL_FAMILY = {"rocky", "rhel", "ol", "almalinux"}


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
                yield from odd_ones_out(r, hosts, column, target, cluster, severity)


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
        yield from odd_ones_out(r, known, "os_version", target, cluster, "warning")


@rule("cluster-same-hypervisor-version", severity="warning", hypervisors={"xenserver", "vmware"}, basis="DOC",
      remediation="Finish the upgrade: one product version (and build) per pool or vSphere cluster.",
      reference="cloudstack-documentation installguide/configuration.rst (homogeneous clusters); _xenserver_upg.rst")
def cluster_same_hypervisor_version(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """One hypervisor product and version per cluster (a XenServer pool, a vSphere cluster)."""
    for hypervisor in ("xenserver", "vmware"):
        for (target, cluster), hosts in view.cluster_groups(hypervisor).items():
            if hypervisor == "vmware" and not any(h["cluster_key"] for h in hosts):
                continue
            yield from odd_ones_out(r, hosts, "product_name", target, cluster, "error")
            yield from odd_ones_out(r, hosts, "hypervisor_version", target, cluster, None)
            yield from odd_ones_out(r, hosts, "build", target, cluster, None)


@rule("kvm-cluster-same-versions", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Upgrade libvirt and QEMU to the same versions on every host of the cluster.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst (live migration)")
def kvm_cluster_same_versions(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Hosts of one KVM cluster run the same libvirt and QEMU versions."""
    for (target, cluster), hosts in view.cluster_groups("kvm").items():
        yield from odd_ones_out(r, hosts, "libvirt_version", target, cluster, None)
        yield from odd_ones_out(r, hosts, "hypervisor_version", target, cluster, None)
