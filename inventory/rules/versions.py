"""Versions and limits: the release's support matrix, the versions CloudStack can drive, and the
hypervisor_capabilities limits (guests per host, data volumes per VM, hosts per cluster)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from inventory.model import Host
from inventory.releases import kvm_os_supported, xen_supported
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, rule
from inventory.rules.common import raw_text, version_tuple


@rule("hypervisor-version-supported", severity="warning", hypervisors={"kvm", "xenserver"}, basis="DOC",
      remediation="Upgrade the hypervisor (or the host OS) to a version the CloudStack release supports.",
      reference="cloudstack-documentation releasenotes/compat.rst at the release's tag")
def hypervisor_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The host's OS (KVM) or product version (XenServer/XCP-ng) is in the release's support matrix."""
    for host in view.hosts:
        if host.hypervisor == "kvm" and host.os_id:
            ok, listed = kvm_os_supported(view.release, host.os_id, host.os_version)
            if not ok:
                yield r.finding(host, f"{host.name}: {host.os_name} {host.os_version} is not a KVM host OS of "
                                f"CloudStack {view.release.asked}", observed=f"{host.os_name} {host.os_version}",
                                expected=listed)
        elif host.hypervisor == "xenserver":
            verdict, listed = xen_supported(view.release, host.product_name, host.hypervisor_version)
            if verdict != "supported":
                yield r.finding(host, f"{host.name}: {host.product_name} {host.hypervisor_version} is "
                                f"{'no longer supported' if verdict == 'dropped' else 'not listed'} for CloudStack "
                                f"{view.release.asked}", observed=f"{host.product_name} {host.hypervisor_version}",
                                expected=listed, severity="error" if verdict == "dropped" else None)


@rule("xen-version-known-to-cloudstack", severity="error", hypervisors={"xenserver"}, basis="CODE",
      remediation="Upgrade the pool to a XenServer/XCP-ng release CloudStack has a resource class for.",
      reference="apache/cloudstack XcpServerDiscoverer.java createServerResource (4.22 line)")
def xen_version_known_to_cloudstack(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The pool's product and version map to one of CloudStack's XenServer resource classes.

    Mapped: XCP 1.x; XenServer 5.6.x, 6.0.0, 6.0.2, 6.1.0, 6.2.0; and any XenServer, XCP-ng or
    Citrix Hypervisor from 6.4 on. Anything else makes adding the host throw.
    """
    for host in view.hosts_of("xenserver"):
        brand, version = host.product_name or "", host.hypervisor_version or ""
        numbers = version_tuple(version)
        known = (brand.startswith("XCP") and (brand != "XCP" or numbers[:1] == (1,))) or \
            numbers[:2] == (5, 6) or numbers[:3] in ((6, 0, 0), (6, 0, 2), (6, 1, 0), (6, 2, 0)) or numbers >= (6, 4)
        if not known:
            yield r.finding(host, f"{host.name}: CloudStack has no resource class for {brand} {version}",
                            observed=f"{brand} {version}",
                            expected="XenServer 5.6, 6.0, 6.0.2, 6.1, 6.2 or ≥ 6.4; XCP-ng; XCP 1.x")


@rule("vmware-version-supported", severity="warning", hypervisors={"vmware"}, basis="DOC",
      remediation="Upgrade ESXi/vCenter to a vSphere release the CloudStack release supports.",
      reference="cloudstack-documentation releasenotes/compat.rst at the release's tag")
def vmware_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """ESXi hosts run a vSphere version in the release's support matrix."""
    support = view.release.support
    listed = [".".join(p for p in v.split()[0].split(".")[:2]) for v in support["vmware_vsphere"]]
    dropped = " ".join(x for x in support.get("listed_as_no_longer_supported", []) if x.startswith("vSphere"))
    for host in view.hosts_of("vmware"):
        short = ".".join((host.hypervisor_version or "").split(".")[:2])
        if short and short not in listed:
            gone = bool(re.search(rf"(?<![\d.]){re.escape(short)}(?![\d])", dropped))
            yield r.finding(host, f"{host.name}: ESXi {host.hypervisor_version} is "
                            f"{'no longer supported' if gone else 'not listed'} for CloudStack {view.release.asked}",
                            observed=host.hypervisor_version, expected=", ".join(support["vmware_vsphere"]),
                            severity="error" if gone else None)


@rule("kvm-libvirt-minimum", severity="warning", hypervisors={"kvm"}, basis="DOC",
      remediation="Upgrade: CloudStack documents libvirt ≥ 1.2.0 and QEMU/KVM ≥ 1.5.",
      reference="cloudstack-documentation installguide/hypervisor/kvm.rst (4.18–4.22)")
def kvm_libvirt_minimum(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """libvirt is at least 1.2.0 and QEMU at least 1.5."""
    for host in view.hosts_of("kvm"):
        for column, least in (("libvirt_version", (1, 2, 0)), ("hypervisor_version", (1, 5))):
            if column == "hypervisor_version" and host.product_name != "QEMU":
                continue  # another libvirt driver (the test driver reports its own version)
            version = getattr(host, column)
            if version and version_tuple(version) < least:
                yield r.finding(host, f"{host.name}: {column} {version}", observed=version,
                                expected="≥ " + ".".join(map(str, least)))


@rule("guests-per-host", severity="error", hypervisors={"xenserver"}, basis="DB + CODE",
      remediation="Move running VMs off the host or add hosts; the limit is hypervisor_capabilities.max_guests_limit.",
      reference="apache/cloudstack CapacityManagerImpl.java; hypervisor_capabilities rows (DB scripts)")
def guests_per_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Running guests per host stay within the release's max_guests_limit (enforced for XenServer)."""
    running = Counter((v.target, v.host_key) for v in view.vms if v.power_state == "running")
    for host in view.hosts_of("xenserver"):
        limits = view.limits("xenserver", host.hypervisor_version)
        count = running[(host.target, host.key)]
        if limits.max_guests is not None and count > limits.max_guests:
            yield r.finding(host, f"{host.name} runs {count} guests; {limits.row} allows {limits.max_guests}",
                            observed=count, expected=f"≤ {limits.max_guests}")


@rule("data-volumes-per-vm", severity="error", hypervisors=ANY_KIND, basis="DB + CODE",
      remediation="Detach data disks: CloudStack will not attach more than max_data_volumes_limit to one VM.",
      reference="apache/cloudstack hypervisor_capabilities.max_data_volumes_limit (DB scripts); VolumeApiServiceImpl")
def data_volumes_per_vm(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Data volumes per VM stay within the release's max_data_volumes_limit."""
    disks = Counter((d.target, d.vm_key) for d in view.vm_disks if d.disk_type in ("disk", None))
    for vm in view.vms:
        host = view.host_by_key.get((vm.target, vm.host_key or ""))
        kind = host.hypervisor if host is not None else view.kind_of_target(vm.target)
        if kind is None:
            continue  # neither its host nor its target is in the scan: no limits to apply
        limits = view.limits(kind, _limits_version(kind, host))
        data = max(0, disks[(vm.target, vm.key)] - 1)
        if limits.max_data_volumes is not None and data > limits.max_data_volumes:
            yield r.finding(vm, f"{vm.name} has {data} data volumes; {limits.row} allows {limits.max_data_volumes}",
                            observed=data, expected=f"≤ {limits.max_data_volumes}")


@rule("cluster-size", severity="warning", hypervisors={"kvm", "xenserver"}, basis="BP",
      remediation="Split the cluster: the documentation advises at most 16 KVM hosts or 8 XenServer hosts per cluster.",
      reference="cloudstack-documentation installguide/configuration.rst (\"do not put more than\")")
def cluster_size(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Clusters stay small: at most 16 KVM hosts, at most 8 XenServer hosts."""
    for kind, most in (("kvm", 16), ("xenserver", 8)):
        for group in view.groups_of(kind):
            if len(group.hosts) > most:
                yield r.finding(group, f"cluster {group.key} has {len(group.hosts)} hosts", observed=len(group.hosts),
                                expected=f"≤ {most}")


@rule("vmware-hosts-per-cluster", severity="error", hypervisors={"vmware"}, basis="CODE + DB + BP",
      remediation="Split the vSphere cluster: CloudStack refuses clusters above max_hosts_per_cluster, and the docs "
                  "advise at most 8 hosts.",
      reference="apache/cloudstack VmwareManagerImpl.java addHostToPodCluster, VmwareServerDiscoverer.java find; "
                "hypervisor_capabilities.max_hosts_per_cluster; configuration.rst")
def vmware_hosts_per_cluster(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A vSphere cluster has no more hosts than max_hosts_per_cluster for its first host's API version (8 advised)."""
    for cluster in view.clusters_of("vmware"):
        hosts = view.hosts_by_cluster.get((cluster.target, cluster.key), [])
        if not hosts:
            continue
        limits = view.limits("vmware", raw_text(hosts[0], "api_version"))
        if limits.max_hosts is not None and len(hosts) > limits.max_hosts:
            yield r.finding(cluster, f"cluster {cluster.name} has {len(hosts)} hosts; {limits.row} allows "
                            f"{limits.max_hosts}", observed=len(hosts), expected=f"≤ {limits.max_hosts}")
        elif len(hosts) > 8:
            yield r.finding(cluster, f"cluster {cluster.name} has {len(hosts)} hosts", observed=len(hosts),
                            expected="≤ 8 (advised)", severity="warning")


def _limits_version(kind: str, host: Host | None) -> str | None:
    """The version hypervisor_capabilities rows are keyed by: vSphere's API version, else the product's."""
    if host is None:
        return None
    return raw_text(host, "api_version") if kind == "vmware" else host.hypervisor_version
