"""Versions and limits: the release's support matrix, the versions CloudStack can drive, and the
hypervisor_capabilities limits (guests per host, data volumes per VM, hosts per cluster)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from operator import attrgetter

from inventory.model import Host
from inventory.releases import kvm_os_supported, xen_supported
from inventory.rulebook import ANY_KIND, Finding, InventoryView, Rule, code, doc, rule
from inventory.rules.common import raw_text, version_tuple

COMPAT = "releasenotes/compat.rst"
ALL_TAGS = "4.18.0.0–4.22.0.1"
CAPACITY_MANAGER = "server/src/main/java/com/cloud/capacity/CapacityManagerImpl.java"
CAPABILITIES_DAO = "engine/schema/src/main/java/com/cloud/hypervisor/dao/HypervisorCapabilitiesDaoImpl.java"


@rule("hypervisor-version-supported", hypervisors={"kvm", "xenserver"}, basis="DOC",
      sources=[doc(COMPAT, "48-59", "each tag 4.18.0.0–4.22.0.1, its own list")],
      evidence=["hosts.os_id", "hosts.os_version", "hosts.product_name", "hosts.hypervisor_version"],
      remediation="Upgrade the hypervisor (or the host OS) to a version the CloudStack release supports.")
def hypervisor_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The host's OS (KVM) or product version (XenServer/XCP-ng) is in the release's support matrix.

    The list is the one compat.rst gives at the release's tag; a version the release notes name as no
    longer supported says so in the message.
    """
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
                                expected=listed)


@rule("xen-version-known-to-cloudstack", hypervisors={"xenserver"}, basis="CODE",
      sources=[code("plugins/hypervisors/xenserver/src/main/java/com/cloud/hypervisor/xenserver/discoverer/"
                    "XcpServerDiscoverer.java", "createServerResource", "4.18–4.22")],
      evidence=["hosts.product_name", "hosts.hypervisor_version"],
      remediation="Upgrade the pool to a XenServer/XCP-ng release CloudStack has a resource class for.")
def xen_version_known_to_cloudstack(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The pool's product brand and version map to one of CloudStack's XenServer resource classes.

    Brand and version go together: XCP only 1.0.0, 1.1.0, 5.6.100, 1.4.x and 1.6.x; XenServer 5.6.0,
    5.6.100 (as "5.6 SP2" or "5.6 FP1"), 6.0.0, 6.0.2, 6.1.0, 6.2.0; XCP_Kronos; XenServer, XCP-ng or
    Citrix Hypervisor from 6.4 on. Anything else makes adding the host throw.
    """
    for host in view.hosts_of("xenserver"):
        brand, version = (host.product_name or "").strip(), (host.hypervisor_version or "").strip()
        if xen_resource_class(brand, version, raw_text(host, "product_version_text_short")) is None:
            yield r.finding(host, f"{host.name}: CloudStack has no resource class for {brand} {version}",
                            observed=f"{brand} {version}",
                            expected="XCP 1.0.0/1.1.0/5.6.100/1.4.x/1.6.x; XenServer 5.6 (GA, FP1, SP2), 6.0, 6.0.2, "
                                     "6.1.0, 6.2.0; XCP_Kronos; XenServer, XCP-ng or Citrix Hypervisor ≥ 6.4")


def xen_resource_class(brand: str, version: str, text_short: str | None) -> str | None:
    """The resource class XcpServerDiscoverer.createServerResource picks for a host, or None (it throws)."""
    if brand == "XCP" and (version in ("1.0.0", "1.1.0", "5.6.100") or version.startswith(("1.4", "1.6"))):
        return "XcpServerResource"
    if brand == "XenServer":
        exact = {"5.6.0": "XenServer56Resource", "6.0.0": "XenServer600Resource", "6.0.2": "XenServer600Resource",
                 "6.1.0": "XenServer610Resource", "6.2.0": "XenServer620Resource"}
        if version in exact:
            return exact[version]
        if version == "5.6.100":  # matched here or nowhere: the branches below are not tried
            return {"5.6 SP2": "XenServer56SP2Resource", "5.6 FP1": "XenServer56FP1Resource"}.get(
                (text_short or "").strip())
    if brand == "XCP_Kronos":
        return "XcpOssResource"
    if brand in ("XenServer", "XCP-ng", "Citrix Hypervisor"):
        numbers = version_tuple(version)
        if numbers[:1] > (6,) or numbers[:2] >= (6, 4):
            return "XenServer650Resource"
    return None


@rule("vmware-version-supported", hypervisors={"vmware"}, basis="DOC",
      sources=[doc(COMPAT, "65", "each tag 4.18.0.0–4.22.0.1, its own list (61 at 4.18.0.0–4.18.2.5, 63 at "
                                 "4.19.0.0–4.20.0.0, 66 at 4.20.1.0, 67 at 4.20.2.0–4.21.0.0)"),
               doc(COMPAT, "67", "each tag 4.18.0.0–4.22.0.1, its own list of the minor versions supported and tested (63 "
                                 "at 4.18.0.0–4.18.2.5, 65 at 4.19.0.0–4.20.0.0, 68 at 4.20.1.0, 69 at 4.20.2.0–4.21.0.0)"),
               doc(COMPAT, "68", "4.18.1.0–4.20.0.0: 8.0 U1 not supported yet (70 at 4.18.1.0–4.18.2.5, 72 at "
                                 "4.19.0.0–4.19.3.0)")],
      evidence=["hosts.hypervisor_version", "hosts.raw_json.api_version"],
      remediation="Run an ESXi version and update the CloudStack release lists as supported and tested.")
def vmware_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """ESXi hosts run a vSphere version, and a minor version, the release supports and tested.

    The release notes list the vSphere versions (7.0, 8.0.0 …) and, in a note, the minor versions
    "supported and tested" (7.0.3.0, 8.0.1.0 …); from 4.18.1.0 to 4.20.0.0 they add that 8.0 U1 is
    not supported yet. A host's API version must be one of the minor versions listed.
    """
    support = view.release.support
    listed = [".".join(p for p in v.split()[0].split(".")[:2]) for v in support["vmware_vsphere"]]
    dropped = " ".join(x for x in support.get("listed_as_no_longer_supported", []) if x.startswith("vSphere"))
    tested = {_four(v.split()[0]): v for v in support.get("vmware_tested_builds", [])}
    u1_not_yet = any("8.0 U1" in note and "not" in note for note in support.get("notes", []))
    for host in view.hosts_of("vmware"):
        short = ".".join((host.hypervisor_version or "").split(".")[:2])
        api = raw_text(host, "api_version") or host.hypervisor_version
        if short and short not in listed:
            gone = bool(re.search(rf"(?<![\d.]){re.escape(short)}(?![\d])", dropped))
            yield r.finding(host, f"{host.name}: ESXi {host.hypervisor_version} is "
                            f"{'no longer supported' if gone else 'not listed'} for CloudStack {view.release.asked}",
                            observed=host.hypervisor_version, expected=", ".join(support["vmware_vsphere"]))
        elif api and _four(api) not in tested:
            why = " (the release notes: 8.0 U1 is not supported yet)" if u1_not_yet and \
                _four(api)[:3] == (8, 0, 1) else ""
            yield r.finding(host, f"{host.name}: ESXi {api} is not among the minor versions CloudStack "
                            f"{view.release.asked} lists as supported and tested{why}", observed=api,
                            expected=", ".join(tested.values()))


@rule("vcenter-version-supported", hypervisors={"vmware"}, basis="DOC",
      sources=[doc(COMPAT, "65", "each tag 4.18.0.0–4.22.0.1, its own list (61 at 4.18.0.0–4.18.2.5, 63 at "
                                 "4.19.0.0–4.20.0.0, 66 at 4.20.1.0, 67 at 4.20.2.0–4.21.0.0)")],
      evidence=["targets.detail.version"],
      remediation="Upgrade vCenter to a vSphere version the CloudStack release supports.")
def vcenter_version_supported(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """The vCenter runs a vSphere version in the release's support matrix.

    The matrix names "VMware versions" for vSphere as a whole, vCenter and ESXi alike.
    """
    support = view.release.support
    listed = [".".join(p for p in v.split()[0].split(".")[:2]) for v in support["vmware_vsphere"]]
    for target in view.targets:
        version = (target.detail or {}).get("version") if target.hypervisor == "vmware" else None
        if version and ".".join(str(version).split(".")[:2]) not in listed:
            yield r.finding(target, f"vCenter {target.endpoint} runs {version}, not a vSphere version CloudStack "
                            f"{view.release.asked} lists", observed=version, expected=", ".join(support["vmware_vsphere"]))


def _four(version: str) -> tuple[int, ...]:
    """A VMware version as four numbers: 8.0 → (8, 0, 0, 0), 6.7.1 → (6, 7, 1, 0)."""
    numbers = version_tuple(version)[:4]
    return numbers + (0,) * (4 - len(numbers))


@rule("vmware-esxi-not-esx", hypervisors={"vmware"}, basis="DOC",
      sources=[doc("installguide/hypervisor/vsphere.rst", "140", ALL_TAGS)],
      evidence=["hosts.product_line"],
      remediation="Replace classic ESX with ESXi.")
def vmware_esxi_not_esx(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """vSphere hosts run ESXi, not classic ESX (product line embeddedEsx)."""
    for host in view.hosts_of("vmware"):
        if host.product_line and host.product_line != "embeddedEsx":
            yield r.finding(host, f"{host.name}: product line {host.product_line}", observed=host.product_line,
                            expected="embeddedEsx (ESXi)")


@rule("kvm-libvirt-minimum", hypervisors={"kvm"}, basis="DOC",
      sources=[doc("installguide/hypervisor/kvm.rst", "37-39", ALL_TAGS + " (39-41 at 4.18.0.0–4.20.1.0, "
                                                                          "39-41 at 4.21.0.0)")],
      evidence=["hosts.libvirt_version", "hosts.hypervisor_version", "hosts.product_name"],
      remediation="Upgrade: CloudStack documents libvirt ≥ 1.2.0 and QEMU/KVM ≥ 1.5.")
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


@rule("guests-per-host", hypervisors=ANY_KIND, basis="CODE",
      sources=[code(CAPACITY_MANAGER, "checkIfHostReachMaxGuestLimit (KVM skipped; full at count >= limit)",
                    "4.16.0.0–4.22 (apache/cloudstack#5417)"),
               code("engine/schema/src/main/java/com/cloud/vm/dao/VMInstanceDaoImpl.java",
                    "countActiveByHostId (Running, Starting, Stopping, Migrating)", "4.18–4.22"),
               code(CAPABILITIES_DAO, "getMaxGuestsLimit", "4.18–4.22 (rows: DB upgrade scripts)")],
      evidence=["vms.cs_role", "vms.power_state", "vms.host_key", "hosts.hypervisor_version",
                "hosts.raw_json.api_version"],
      remediation="Move VMs off the host or add hosts: CloudStack places no further VM on a host whose count of its "
                  "VMs has reached hypervisor_capabilities.max_guests_limit.")
def guests_per_host(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A host has room below the release's max_guests_limit (every hypervisor but KVM).

    CloudStack counts its own VMs on the host in Running, Starting, Stopping or Migrating and treats the
    host as full when that count reaches the limit; KVM is exempt since 4.16. The scan counts the
    CloudStack-named VMs the hypervisor shows running (or stopping).
    """
    active = Counter((v.target, v.host_key) for v in view.vms
                     if v.cs_role not in ("unmanaged", "worker") and v.power_state in ("running", "stopping"))
    for host in view.hosts:
        if host.hypervisor == "kvm":
            continue
        limits = view.limits(host.hypervisor, _limits_version(host.hypervisor, host))
        count = active[(host.target, host.key)]
        if limits.max_guests is not None and count >= limits.max_guests:
            yield r.finding(host, f"{host.name} runs {count} CloudStack VMs; {limits.row} allows {limits.max_guests}: "
                            "full", observed=count, expected=f"< {limits.max_guests}")


_TARGET = attrgetter("target")


@rule("data-volumes-per-vm", hypervisors=ANY_KIND, basis="CODE",
      sources=[code("server/src/main/java/com/cloud/storage/VolumeApiServiceImpl.java", "getMaxDataVolumesSupported",
                    "4.18–4.22 (rows: DB upgrade scripts; 6 when unset; it takes a UserVmVO and is called "
                    "only when a volume is attached: CloudStack's user VMs alone)")],
      evidence=["vms.cs_role", "vm_disks.disk_type", "vm_disks.vm_key", "hosts.hypervisor_version",
                "hosts.raw_json.api_version"],
      remediation="Detach data disks: CloudStack will not attach more than max_data_volumes_limit to one VM.")
def data_volumes_per_vm(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Data volumes per CloudStack user VM stay within the release's max_data_volumes_limit.

    CloudStack applies the limit only when it attaches a volume to one of its user VMs; VMs it does not manage
    (and its routers, system VMs and VMware workers, to which no volume is attached) are not judged.
    """
    users = {(v.target, v.key) for v in view.vms if v.cs_role == "user"}
    disks = Counter(key for d in view.vm_disks
                    if d.disk_type in ("disk", None) and (key := (d.target, d.vm_key)) in users)
    of_host = {key: view.limits(h.hypervisor, _limits_version(h.hypervisor, h)) for key, h in view.host_by_key.items()}
    # a VM is judged by its host's limits, else (its host not in the scan) by its target's kind's
    kinds = {kind for target in set(map(_TARGET, view.vms)) if (kind := view.kind_of_target(target)) is not None}
    limits_used = [*of_host.values(), *(view.limits(kind, None) for kind in kinds)]
    fewest = min((limits.max_data_volumes for limits in limits_used if limits.max_data_volumes is not None),
                 default=None)
    if fewest is None:
        return
    if max(disks.values(), default=0) - 1 <= fewest:  # most estates: no VM can be over any limit
        return
    many = {key for key, count in disks.items() if count - 1 > fewest}  # no other VM can be over any limit
    for vm in view.vms:
        if (vm.target, vm.key) not in many:
            continue
        limits = of_host.get((vm.target, vm.host_key or ""))
        if limits is None:  # a VM whose host is not in the scan: its target's kind, no version
            kind = view.kind_of_target(vm.target)
            if kind is None:
                continue  # neither its host nor its target is in the scan: no limits to apply
            limits = view.limits(kind, None)
        data = max(0, disks[(vm.target, vm.key)] - 1)
        if limits.max_data_volumes is not None and data > limits.max_data_volumes:
            yield r.finding(vm, f"{vm.name} has {data} data volumes; {limits.row} allows {limits.max_data_volumes}",
                            observed=data, expected=f"≤ {limits.max_data_volumes}")


CLUSTER_SIZES = {"kvm": 16, "xenserver": 8, "vmware": 8}


@rule("cluster-size", hypervisors=set(CLUSTER_SIZES), basis="DOC",
      sources=[doc("installguide/configuration.rst", "1038-1040", ALL_TAGS + " (1004-1006 at 4.18.0.0–4.18.1.1, 1013-1015 "
                                                                             "at 4.18.2.0–4.18.2.5, 1004-1006 at "
                                                                             "4.19.0.0–4.19.0.2, 1013-1015 at "
                                                                             "4.19.1.0–4.19.1.3, 1025-1027 at "
                                                                             "4.19.2.0–4.19.3.0, 1018-1020 at 4.20.0.0, "
                                                                             "1033-1035 at 4.20.1.0–4.20.2.0, 1045-1047 at "
                                                                             "4.20.3.0, 1035-1037 at 4.21.0.0)"),
               doc("installguide/configuration.rst", "940", ALL_TAGS + " (906 at 4.18.0.0–4.18.1.1, 915 at "
                                                                       "4.18.2.0–4.18.2.5, 906 at 4.19.0.0–4.19.0.2, 915 at "
                                                                       "4.19.1.0–4.19.1.3, 927 at 4.19.2.0–4.19.3.0, 920 at "
                                                                       "4.20.0.0, 935 at 4.20.1.0–4.20.2.0, 947 at "
                                                                       "4.20.3.0, 937 at 4.21.0.0)")],
      evidence=["hosts.cluster_key"],
      remediation="Split the cluster: the documentation says at most 16 KVM hosts, 8 XenServer hosts or 8 vSphere "
                  "hosts per cluster.")
def cluster_size(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """Clusters stay small: at most 16 KVM hosts, 8 XenServer hosts, 8 hosts in a vSphere cluster.

    No code enforces these numbers (VMware's own cap is vmware-hosts-per-cluster); the installation
    guide lists them as cluster requirements.
    """
    for kind, most in CLUSTER_SIZES.items():
        for group in view.groups_of(kind):
            if kind == "vmware" and group.names_no_cluster:
                continue  # standalone ESXi hosts are no cluster
            if len(group.hosts) > most:
                yield r.finding(group, f"cluster {group.key} has {len(group.hosts)} hosts", observed=len(group.hosts),
                                expected=f"≤ {most}")


@rule("vmware-hosts-per-cluster", hypervisors={"vmware"}, basis="CODE",
      sources=[code("plugins/hypervisors/vmware/src/main/java/com/cloud/hypervisor/vmware/VmwareServerDiscoverer.java",
                    "find", "≤4.11–4.22"),
               code(CAPABILITIES_DAO, "findByHypervisorTypeAndVersion", "4.18.1.0–4.22 (parent version lookup)")],
      evidence=["hosts.cluster_key", "hosts.raw_json.api_version"],
      remediation="Split the vSphere cluster: CloudStack refuses clusters above max_hosts_per_cluster.")
def vmware_hosts_per_cluster(view: InventoryView, r: Rule) -> Iterator[Finding]:
    """A vSphere cluster has no more hosts than max_hosts_per_cluster for its first host's API version."""
    for cluster in view.clusters_of("vmware"):
        hosts = view.hosts_by_cluster.get((cluster.target, cluster.key), [])
        if not hosts:
            continue
        limits = view.limits("vmware", raw_text(hosts[0], "api_version"))
        if limits.max_hosts is not None and len(hosts) > limits.max_hosts:
            yield r.finding(cluster, f"cluster {cluster.name} has {len(hosts)} hosts; {limits.row} allows "
                            f"{limits.max_hosts}", observed=len(hosts), expected=f"≤ {limits.max_hosts}")


def _limits_version(kind: str, host: Host | None) -> str | None:
    """The version hypervisor_capabilities rows are keyed by: vSphere's API version, else the product's."""
    if host is None:
        return None
    return raw_text(host, "api_version") if kind == "vmware" else host.hypervisor_version
