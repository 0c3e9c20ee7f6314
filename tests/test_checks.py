"""The CloudStack checks: each rule failing and passing on real or faithful servers, the real
pool dumps giving the findings a reviewer expects (with the reason written down), and the
release-aware limits."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from collectors.kvm import KvmCollector, KvmTarget
from collectors.xenserver import XenServerCollector, XenTarget, read_dump
from fixtures.testdriver import write_cluster
from fixtures.xapi.server import serve_dump
from fixtures.xapi.synth import generate
from inventory import ConfigError, exit_code_for, open_store, run_checks, select_rules
from inventory import schema
from inventory.model import Secret, TargetResult
from inventory.releases import resolve
from inventory.store import ScanRow
from tests.conftest import real_dump_params


def check(tmp_path: Path, results: list[TargetResult], version: str = "4.20", **options: Any) -> list[Any]:
    store = open_store(tmp_path / f"checks-{len(list(tmp_path.iterdir()))}.db")
    scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, version, "test", None), results)
    return run_checks(store, scan_id, version, **options)


def by_rule(findings: list[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for f in findings:
        grouped.setdefault(f.rule_id, []).append(f)
    return grouped


def xen_offline(dump: Path) -> TargetResult:
    """A pool read from its dump through the same normaliser, without the wire: for the big pools the limits need
    (the wire is tested with the real and synthetic pools elsewhere)."""
    read = read_dump(dump, "pool")
    return XenServerCollector(read.target).result(read)


def xen(dump: Path, **server: Any) -> TargetResult:
    os.environ["CSI_CHECK_PW"] = "xenroot"
    started = serve_dump(dump, **server)
    try:
        return XenServerCollector(XenTarget(name="pool", url=started.url,
                                            password=Secret("env", "CSI_CHECK_PW"))).collect()
    finally:
        started.stop()


def kvm(folder: Path, hosts: list[str], **extra: Any) -> TargetResult:
    return KvmCollector(KvmTarget(name="kvm", hosts=tuple(hosts), uri=f"test://{folder}/{{host}}.xml",
                                  ssh_facts=False, cluster="c1", **extra)).collect()


# -- the real pool dumps: what a reviewer expects, and why ------------------------------------
def attrs(dump: Path, table: str) -> list[dict[str, str]]:
    found = ET.parse(dump).getroot().find(f"table[@name='{table}']")
    return [] if found is None else [dict(r.attrib) for r in found.findall("row")]


@pytest.mark.parametrize("dump", real_dump_params(), ids=lambda p: getattr(p, "name", "real-dumps"))
def test_real_dumps_give_the_findings_a_reviewer_expects(dump: Path, tmp_path: Path) -> None:
    findings = by_rule(check(tmp_path, [xen(dump)], "4.20"))
    hosts = attrs(dump, "host")
    versions = {dict(h)["software_version"].split("'product_version' '")[1].split("'")[0] for h in hosts}
    # These pools run XenServer 5.5–6.1; CloudStack 4.20 supports XenServer 8.2/8.4 and XCP-ng 8.2/8.3 only
    # (compat.rst @ 4.20), so every host is outside the support matrix.
    assert len(findings["hypervisor-version-supported"]) == len(hosts)
    # CloudStack maps 5.6.x, 6.0.0, 6.0.2, 6.1.0, 6.2.0 and ≥ 6.4 to resource classes (XcpServerDiscoverer):
    # 6.0.50 (a pre-6.1 build) and 5.5.900 (a pre-5.6 build) would make adding the host throw.
    unmappable = {"6.0.50", "5.5.900"} & versions
    assert len(findings.get("xen-version-known-to-cloudstack", [])) == (len(hosts) if unmappable else 0)
    # No pool in these dumps has HA enabled (pool ha_enabled="false"); compat.rst asks for pool HA.
    assert [a["ha_enabled"] for a in attrs(dump, "pool")] == ["false"]
    assert len(findings["xen-pool-ha"]) == 1
    # Their VMs are named by people ("16shared", "CentOS 5 (32-bit) (2)"), not CloudStack instances: the running
    # ones break "the hypervisor host must not have any VMs already running" (_requirements.rst:69-70).
    running = [v for v in attrs(dump, "VM") if v.get("power_state") == "Running" and v.get("is_control_domain") ==
               "false" and v.get("is_a_template") == "false" and v.get("is_a_snapshot") == "false"]
    assert len(findings.get("unmanaged-vms", [])) == len(running)
    assert {f.severity for f in findings.get("unmanaged-vms", [])} <= {"warning"}
    # dom0 got the installer's ~750 MB; the docs recommend 2940 MB for many VMs (info only).
    assert len(findings["xen-dom0-memory"]) == len(hosts)
    # Management PIFs configured by DHCP are flagged; static ones are not.
    dhcp = [p for p in attrs(dump, "PIF") if p.get("management") == "true" and p.get("ip_configuration_mode") == "DHCP"]
    assert len(findings.get("static-management-address", [])) == len(dhcp)
    if dump.name == "updatesState.xml":
        # Its host has hotfixes applied (host_patch rows, applied): named by their pool_patch, as XenCenter shows them.
        patches = {p["ref"]: p["name__label"] for p in attrs(dump, "pool_patch")}
        applied = sorted(patches[p["pool_patch"]] for p in attrs(dump, "host_patch") if p["applied"] == "true")
        (host,) = {h.applied_updates for h in xen(dump).inventory.hosts}
        assert applied and host == ", ".join(applied)
        # krakout has 3,210,838,016 bytes of RAM (host_metrics.memory_total): under the documented 4 GB.
        assert [f.observed for f in findings["host-memory"]] == ["3210838016"]
        # SRs "hgf" and "test" are 97.8 % and 100 % used (physical_utilisation / physical_size), above the
        # 85 % pool.storage.capacity.disablethreshold.
        assert sorted(f.message.split(" is ")[0] for f in findings["storage-capacity"]) == ["hgf", "test"]
    else:
        assert "host-memory" not in findings and "storage-capacity" not in findings
    # Nothing in these pools breaks rules they should pass: masters are enabled, every shared SR has a
    # PBD attached on every host, no MAC or UUID repeats.
    for passing in ("xen-master-enabled", "shared-storage-on-every-host", "duplicate-mac", "duplicate-uuid",
                    "xen-management-pif", "xen-hardware-virtualisation", "guests-per-host"):
        assert passing not in findings, (passing, findings.get(passing))


# -- XenServer rules on synthetic current pools -----------------------------------------------
def edited_pool(tmp_path: Path, edit: Any, hosts: int = 3, vms: int = 12) -> Path:
    tree = ET.ElementTree(ET.fromstring(generate(hosts, vms, "xcp-ng-8.3", seed=str(tmp_path))))
    edit(tree.getroot())
    path = tmp_path / f"pool-{len(list(tmp_path.iterdir()))}.xml"
    tree.write(path)
    return path


def rows_of(root: ET.Element, table: str) -> list[ET.Element]:
    found = root.find(f"table[@name='{table}']")
    assert found is not None
    return found.findall("row")


def test_a_clean_current_pool_passes_the_xen_rules(tmp_path: Path) -> None:
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, lambda root: None))], "4.22"))
    assert set(findings) == {"xen-pool-ha"}  # synthetic pools have HA off; 12 VMs are all CloudStack's


def test_xen_management_pif_on_a_vlan_or_bond(tmp_path: Path) -> None:
    def vlan_management(root: ET.Element) -> None:
        for pif in rows_of(root, "PIF"):
            if pif.get("management") == "true" and pif.get("host", "").endswith(rows_of(root, "host")[0].get("ref", "")[-12:]):
                pif.set("VLAN", "10")
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, vlan_management))]))
    assert [f.observed for f in findings["xen-management-pif"]] == ["VLAN 10"]


def test_xen_shared_sr_detached_on_one_host_and_storage_nearly_full(tmp_path: Path) -> None:
    def edit(root: ET.Element) -> None:
        nfs = next(sr for sr in rows_of(root, "SR") if sr.get("type") == "nfs")
        pbd = next(p for p in rows_of(root, "PBD") if p.get("SR") == nfs.get("ref"))
        pbd.set("currently_attached", "false")
        nfs.set("physical_utilisation", str(int(int(nfs.get("physical_size", "0")) * 0.9)))
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, edit))]))
    (detached,) = findings["shared-storage-on-every-host"]
    assert detached.severity == "warning" and detached.observed == "not attached"  # DOC: configuration.rst
    assert [f.observed for f in findings["storage-capacity"]] == ["90.0%"]


def test_storage_capacity_is_refused_at_the_setting_s_threshold(tmp_path: Path) -> None:
    """StorageManagerImpl.checkUsagedSpace: used/total >= pool.storage.capacity.disablethreshold refuses the pool."""
    def at_85(root: ET.Element) -> None:
        nfs = next(sr for sr in rows_of(root, "SR") if sr.get("type") == "nfs")
        nfs.set("physical_utilisation", str(int(nfs.get("physical_size", "0")) * 85 // 100))
    result = xen(edited_pool(tmp_path, at_85))
    (full,) = by_rule(check(tmp_path, [result], "4.22"))["storage-capacity"]
    assert (full.observed, full.severity) == ("85.0%", "error")
    assert "pool.storage.capacity.disablethreshold 0.85 (CloudStack's default)" in full.message
    stated = {"pool.storage.capacity.disablethreshold": "0.9"}
    assert "storage-capacity" not in by_rule(check(tmp_path, [result], "4.22", settings=stated))


def test_storage_allocated_capacity_counts_overprovisioning(tmp_path: Path) -> None:
    """StorageManagerImpl.checkPoolforSpace: allocated / (capacity × storage.overprovisioning.factor for pool types
    that overprovision) above pool.storage.allocated.capacity.disablethreshold refuses new volumes."""
    def small_nfs(root: ET.Element) -> None:  # 12 CloudStack VMs × (20 + 50) GiB virtual on a 400 GiB NFS SR
        nfs = next(sr for sr in rows_of(root, "SR") if sr.get("type") == "nfs")
        nfs.set("physical_size", str(400 * 2**30))
        nfs.set("physical_utilisation", str(10 * 2**30))
    result = xen(edited_pool(tmp_path, small_nfs))
    findings = by_rule(check(tmp_path, [result], "4.22"))
    assert "storage-capacity" not in findings
    (over,) = findings["storage-allocated-capacity"]
    assert over.observed == "105.0%" and over.expected == "≤ 85%" and over.severity == "error"
    assert "storage.overprovisioning.factor 2 (CloudStack's default)" in over.message
    roomy = {"storage.overprovisioning.factor": "3"}  # 840 / 1200 = 70 %
    assert "storage-allocated-capacity" not in by_rule(check(tmp_path, [result], "4.22", settings=roomy))


def test_storage_allocated_capacity_overprovisions_shared_mount_points_from_4_19_1_0(tmp_path: Path) -> None:
    """Storage.StoragePoolType SharedMountPoint overprovisions since apache/cloudstack#8481, listed in the
    4.19.1.0 release notes (releasenotes/changes.rst:682-683 at 4.19.1.0): 120 % of its capacity allocated is over
    the threshold before, 60 % of the doubled capacity from then."""
    from inventory.model import Host, HostStorage, Inventory, Storage, Vm, VmDisk
    inv = Inventory()
    inv.hosts.append(Host(key="h0", target="kvm", cluster_key="c1", name="kvm0", address="10.0.0.1",
                          hypervisor="kvm", state="connected"))
    inv.storage.append(Storage(key="s1", target="kvm", name="gfs2", kind="sharedmountpoint", shared=True,
                               capacity_bytes=100 * 2**30, free_bytes=90 * 2**30,
                               raw_json={"libvirt_type": "dir", "allocation": 10 * 2**30}))
    inv.host_storage.append(HostStorage(host_key="h0", target="kvm", storage_key="s1", attached=True))
    inv.vms.append(Vm(key="v0", target="kvm", host_key="h0", cluster_key="c1", name="i-2-5-VM", cs_role="user",
                      power_state="running"))
    inv.vm_disks.append(VmDisk(vm_key="v0", target="kvm", device="vda", disk_type="disk", storage_key="s1",
                               capacity_bytes=120 * 2**30))
    result = TargetResult(name="kvm", hypervisor="kvm", endpoint="kvm", status="ok", inventory=inv)
    for version, expected in (("4.18", ["120.0%"]), ("4.19.0.2", ["120.0%"]), ("4.19.1.0", []), ("4.22", [])):
        findings = by_rule(check(tmp_path, [result], version))
        assert [f.observed for f in findings.get("storage-allocated-capacity", [])] == expected, version


def test_xen_master_disabled_and_member_configured(tmp_path: Path) -> None:
    def disable_master(root: ET.Element) -> None:
        rows_of(root, "host")[0].set("enabled", "false")
    dump = edited_pool(tmp_path, disable_master)
    master = serve_dump(dump, host="127.0.0.2")
    member = serve_dump(dump, host="127.0.0.3", port=master.port, member_of="127.0.0.2")
    os.environ["CSI_CHECK_PW"] = "xenroot"
    try:
        result = XenServerCollector(XenTarget(name="pool", url=member.url,
                                              password=Secret("env", "CSI_CHECK_PW"))).collect()
    finally:
        master.stop()
        member.stop()
    findings = by_rule(check(tmp_path, [result]))
    assert findings["xen-master-enabled"][0].observed == "disabled"
    assert findings["xen-target-is-master"][0].expected == master.url
    assert findings["host-state"][0].observed == "disabled"


def test_guests_per_host_follow_the_release_limit(tmp_path: Path) -> None:
    """XCP-ng 8.3.0 has max_guests_limit 1000 (schema-42000to42010); a host running 1,001 guests is over it."""
    crowded = tmp_path / "crowded.xml"
    crowded.write_text(generate(1, 1252, "xcp-ng-8.3", seed="crowded"))  # every fifth VM is halted: 1,002 run
    findings = by_rule(check(tmp_path, [xen_offline(crowded)], "4.22"))
    (over,) = findings["guests-per-host"]
    assert over.observed == "1002" and over.expected == "< 1000"
    fine = tmp_path / "fine.xml"
    fine.write_text(generate(2, 1252, "xcp-ng-8.3", seed="fine"))
    assert "guests-per-host" not in by_rule(check(tmp_path, [xen_offline(fine)], "4.22"))


def test_guests_per_host_counts_cloudstacks_vms_and_is_full_at_the_limit(tmp_path: Path) -> None:
    """CapacityManagerImpl.checkIfHostReachMaxGuestLimit: a host is full at count >= max_guests_limit, counting
    CloudStack's VMs (VMInstanceDaoImpl.countActiveByHostId), on every hypervisor but KVM."""
    def all_running(root: ET.Element) -> None:
        host = rows_of(root, "host")[0].get("ref", "")
        for vm in rows_of(root, "VM"):
            if vm.get("is_control_domain") == "false" and vm.get("is_a_template") == "false" and \
                    vm.get("is_a_snapshot") == "false":
                vm.set("power_state", "Running")
                vm.set("resident_on", host)
    # 1,020 VMs: 20 are named by people (legacy-db-…), 1,000 are CloudStack's; all run
    full = tmp_path / "full.xml"
    tree = ET.ElementTree(ET.fromstring(generate(1, 1020, "xcp-ng-8.3", seed="full")))
    all_running(tree.getroot())
    tree.write(full)
    (at_limit,) = by_rule(check(tmp_path, [xen_offline(full)], "4.22"))["guests-per-host"]
    assert (at_limit.observed, at_limit.expected) == ("1000", "< 1000") and at_limit.severity == "error"
    one_stopped = ET.parse(full)
    next(vm for vm in rows_of(one_stopped.getroot(), "VM") if vm.get("name__label", "").startswith("i-")).set(
        "power_state", "Halted")
    one_stopped.write(tmp_path / "room.xml")
    assert "guests-per-host" not in by_rule(check(tmp_path, [xen_offline(tmp_path / "room.xml")], "4.22"))


def fake_target(kind: str, hosts: list[tuple[str, str | None, dict[str, Any]]], vms_per_host: int,
                name: str = "t") -> TargetResult:
    """Hosts (key, version, raw_json) of a kind with that many running CloudStack VMs each: the corners a real
    server here cannot show (the vCenter simulator names its VMs itself; KVM has no such limit)."""
    from inventory.model import Host, Inventory, Vm
    inv = Inventory()
    for key, version, raw in hosts:
        inv.hosts.append(Host(key=key, target=name, cluster_key="c1", name=key, address=key, hypervisor=kind,
                              hypervisor_version=version, raw_json=raw))
        inv.vms += [Vm(key=f"{key}-{i}", target=name, host_key=key, cluster_key="c1", name=f"i-2-{i}-VM",
                       cs_role="user", power_state="running") for i in range(vms_per_host)]
    return TargetResult(name=name, hypervisor=kind, endpoint=name, status="ok", inventory=inv)


def test_guests_per_host_on_vmware_and_not_on_kvm(tmp_path: Path) -> None:
    # VMware 8.0.2.0 has max_guests_limit 1024 (schema-41910to42000), VMware 5.5 128 (schema-421to430)
    esx = fake_target("vmware", [("host-8", "8.0.2", {"api_version": "8.0.2.0"}),
                                 ("host-55", "5.5.0", {"api_version": "5.5"})], 128)
    (full,) = by_rule(check(tmp_path, [esx], "4.22"))["guests-per-host"]
    assert (full.object_key, full.observed, full.expected) == ("host-55", "128", "< 128")
    kvm_hosts = fake_target("kvm", [("kvm-1", "8.2.0", {})], 60)  # KVM's default row says 50; not enforced (4.16+)
    assert "guests-per-host" not in by_rule(check(tmp_path, [kvm_hosts], "4.22"))


@pytest.mark.parametrize("release, api, supported", [
    ("4.20.0.0", "8.0.1.0", False),   # compat.rst @4.18.1.0–4.20.0.0: "8.0 U1 (8.0.1.0) is not supported yet"
    ("4.19.1.0", "8.0.1.0", False),
    ("4.20.1.0", "8.0.1.0", True),    # tested from 4.20.1.0
    ("4.22", "8.0.2.0", True), ("4.22", "8.0.4.0", False), ("4.22", "7.0.3.0", True), ("4.22", "6.7.3", False),
    ("4.18.0.0", "6.5", True), ("4.18.0.0", "8.0.0.0", False),  # 8.0 only "rudimentary" there, not tested
])
def test_vmware_version_follows_the_tested_minor_versions(tmp_path: Path, release: str, api: str,
                                                         supported: bool) -> None:
    esx = fake_target("vmware", [("esx-1", ".".join(api.split(".")[:3]), {"api_version": api})], 0)
    findings = by_rule(check(tmp_path, [esx], release)).get("vmware-version-supported", [])
    assert (not findings) is supported, [f.message for f in findings]
    if release in ("4.20.0.0", "4.19.1.0"):
        assert "8.0 U1" in findings[0].message


def test_vcenter_version(tmp_path: Path) -> None:
    for version, listed in (("8.0.3", True), ("6.7.0", False)):
        vc = fake_target("vmware", [], 0, name=f"vc-{version}")
        vc.detail = {"version": version}
        found = by_rule(check(tmp_path, [vc], "4.22")).get("vcenter-version-supported", [])
        assert (not found) is listed and all(f.object_type == "target" for f in found)


def test_vmware_corners_the_simulator_cannot_make(tmp_path: Path) -> None:
    """Classic ESX, management on a distributed port group, a vSphere traffic label with VLAN and switch type."""
    result = esx_hosts(
        {"name": "esx-classic", "line": "esx", "vnics": {"vmk0": "Management Network"},
         "services": {"management": ["vmk0"], "vmotion": ["vmk0"]}},
        {"name": "esx-dvs", "vnics": {"vmk0": ("dv", "dvportgroup-9")},
         "services": {"management": ["vmk0"], "vmotion": ["vmk0"]}})
    findings = by_rule(check(tmp_path, [result], "4.22", settings={"vmware.management.portgroup": "dv-mgmt"}))
    assert [(f.object_key, f.observed) for f in findings["vmware-esxi-not-esx"]] == [("esx-classic", "esx")]
    assert [f.object_key for f in findings["vmware-management-standard-vswitch"]] == ["esx-dvs"]
    assert [f.object_key for f in findings["vmware-management-portgroup"]] == ["esx-classic"]
    assert "vmware-management-vmk-services" not in findings and "vmware-cluster-same-version" not in findings
    upgrading = esx_hosts(*({"name": f"esx-{i}", "vnics": {"vmk0": "Management Network"}, "services": {}}
                            for i in range(3)), {"name": "esx-new", "version": "8.0.3", "build": "24022510",
                                                 "vnics": {"vmk0": "Management Network"}, "services": {}})
    mixed = by_rule(check(tmp_path, [upgrading], "4.22"))["vmware-cluster-same-version"]
    assert {(f.object_key, f.observed, f.basis) for f in mixed} == {("esx-new", "8.0.3", "INF"),
                                                                     ("esx-new", "24022510", "INF")}
    labels = {"guest": "dv-mgmt,200,vmwaredvs"}  # switch[,VLAN[,type]]: the port group must exist, not the string
    assert "traffic-labels-on-every-host" not in by_rule(check(tmp_path, [result], "4.22", traffic_labels=labels))


def test_vmware_cluster_ha_without_drs(tmp_path: Path) -> None:
    """vSphere HA is what CloudStack records as NativeHA (VmwareServerDiscoverer); nothing in CloudStack asks for
    DRS, so a cluster with DRS off gives no finding. The old id still selects the rule."""
    from inventory.model import Cluster
    vc = fake_target("vmware", [], 0)
    vc.inventory.clusters += [Cluster(key="c-ha", target="t", name="ha", hypervisor="vmware", ha_enabled=True,
                                      drs_enabled=False),
                              Cluster(key="c-none", target="t", name="none", hypervisor="vmware", ha_enabled=False,
                                      drs_enabled=True)]
    assert "vmware-dedicated-cluster" not in by_rule(check(tmp_path, [vc], "4.22"))  # no VMs but CloudStack's
    (off,) = by_rule(check(tmp_path, [vc], "4.22"))["vmware-cluster-ha"]
    assert (off.object_key, off.basis, off.severity) == ("c-none", "INF", "info")
    assert {f.rule_id for f in check(tmp_path, [vc], "4.22", only=["vmware-ha-drs"])} == {"vmware-cluster-ha"}


def test_unmanaged_vms_running_on_cloudstack_hosts(tmp_path: Path) -> None:
    """"the hypervisor host must not have any VMs already running" (_requirements.rst:69-70): a running VM that is not
    CloudStack's is reported; a stopped one is not (the pool's legacy-db VMs are halted)."""
    def one_running_stranger(root: ET.Element) -> None:
        vm = next(v for v in rows_of(root, "VM") if v.get("name__label") == "i-5-1003-VM")
        vm.set("name__label", "backup-server")
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, one_running_stranger, vms=60))], "4.22"))
    (stranger,) = findings["unmanaged-vms"]
    assert (stranger.observed, stranger.severity) == ("backup-server", "warning")
    assert "unmanaged-vms" not in by_rule(check(tmp_path, [xen(edited_pool(tmp_path, lambda root: None, vms=60))]))


def test_host_memory_on_every_kind(tmp_path: Path) -> None:
    """4 GB of memory: _requirements.rst:61 for every host, vsphere.rst:84 for ESXi."""
    from dataclasses import replace
    esx = fake_target("vmware", [("esx-small", "8.0.2", {"api_version": "8.0.2.0"}),
                                 ("esx-big", "8.0.2", {"api_version": "8.0.2.0"})], 0)
    esx.inventory.hosts = [replace(h, memory_bytes=(2 if h.key == "esx-small" else 64) * 2**30)
                           for h in esx.inventory.hosts]
    (small,) = by_rule(check(tmp_path, [esx], "4.22"))["host-memory"]
    assert (small.object_key, small.observed, small.severity) == ("esx-small", str(2 * 2**30), "warning")


def test_xen_traffic_labels(tmp_path: Path) -> None:
    result = xen(edited_pool(tmp_path, lambda root: None))
    labels = {"guest": "Pool-wide network associated with eth1", "public": "public-vlan100"}
    assert "traffic-labels-on-every-host" not in by_rule(check(tmp_path, [result], traffic_labels=labels))
    missing = by_rule(check(tmp_path, [result], traffic_labels={"storage": "storage-net"}))
    assert len(missing["traffic-labels-on-every-host"]) == 3


# -- KVM rules on libvirt test-driver clusters --------------------------------------------------
def test_kvm_cluster_cpu_and_bridges(tmp_path: Path) -> None:
    hosts = write_cluster(tmp_path / "a", 4, 3, cpu_models={2: "Haswell"}, bridges={3: ("cloudbr0",)})
    result = kvm(tmp_path / "a", [h.name for h in hosts])
    findings = by_rule(check(tmp_path, [result], traffic_labels={"management": "cloudbr0", "guest": "cloudbr1"}))
    (odd_cpu,) = findings["cluster-same-cpu"]
    assert odd_cpu.object_key.endswith("kvm003") and odd_cpu.observed == "Haswell"
    (no_guest,) = findings["traffic-labels-on-every-host"]
    assert no_guest.object_key.endswith("kvm004") and no_guest.expected == "cloudbr1"
    same = write_cluster(tmp_path / "b", 3, 3)
    clean = by_rule(check(tmp_path, [kvm(tmp_path / "b", [h.name for h in same])],
                          traffic_labels={"management": "cloudbr0", "guest": "cloudbr1"}))
    assert "cluster-same-cpu" not in clean and "traffic-labels-on-every-host" not in clean


def test_kvm_cluster_size_and_duplicates(tmp_path: Path) -> None:
    hosts = write_cluster(tmp_path / "big", 17, 1)
    original = hosts[0].path.read_text()
    # a stale copy of host 1's domain definitions (same UUIDs) and a cloned VM with new UUIDs but the same MACs
    (tmp_path / "big" / "stale.xml").write_text(original)
    (tmp_path / "big" / "cloned.xml").write_text(re.sub(r"<uuid>[^<]*</uuid>",
                                                        lambda _: f"<uuid>{uuid.uuid4()}</uuid>", original))
    findings = by_rule(check(tmp_path, [kvm(tmp_path / "big", [h.name for h in hosts] + ["stale", "cloned"])]))
    assert findings["cluster-size"][0].observed == "19"
    assert [f.observed for f in findings["duplicate-uuid"]] == ["2"]       # the stale copy
    assert {f.message.split()[1] for f in findings["duplicate-mac"]} == {  # the clone's MACs, one finding each
        m for m in re.findall(r"<interface type='bridge'><mac address='([^']+)'", original)}
    small = by_rule(check(tmp_path, [kvm(tmp_path / "big", [h.name for h in hosts[:16]])]))
    assert not {"cluster-size", "duplicate-mac", "duplicate-uuid"} & set(small)


def test_data_volumes_per_vm_limit_is_32_on_kvm(tmp_path: Path) -> None:
    folder = tmp_path / "vols"
    folder.mkdir()
    def host(disks: int) -> str:
        devices = "".join(f"<disk type='file' device='disk'><source file='/var/lib/libvirt/images/d{i}'/>"
                          f"<target dev='vd{chr(97 + i // 26) if i >= 26 else ''}{chr(97 + i % 26)}' bus='virtio'/></disk>"
                          for i in range(disks))
        return ("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active>"
                "<mhz>2000</mhz><model>x86_64</model></cpu><memory>16777216</memory>"
                f"<domain type='test'><name>i-2-77-VM</name><memory>65536</memory><vcpu>1</vcpu>"
                f"<os><type>hvm</type></os><devices>{devices}</devices></domain></node>")
    (folder / "many.xml").write_text(host(34))   # root + 33 data volumes
    (folder / "fine.xml").write_text(host(33))   # root + 32
    findings = by_rule(check(tmp_path, [kvm(folder, ["many", "fine"])]))
    (over,) = findings["data-volumes-per-vm"]
    assert over.observed == "33" and over.expected == "≤ 32"


def test_data_volumes_per_vm_judges_only_cloudstacks_user_vms(tmp_path: Path) -> None:
    """CloudStack applies max_data_volumes_limit when it attaches a volume to one of its user VMs
    (VolumeApiServiceImpl.getMaxDataVolumesSupported(UserVmVO)): an appliance it does not manage, with 8 data disks
    on XCP-ng 8.3 under 4.18 (limit 6), is no finding; the same disks on a CloudStack user VM are."""
    from inventory.model import Host, Inventory, Vm, VmDisk
    inv = Inventory()
    inv.hosts.append(Host(key="h0", target="xcp", cluster_key="c1", name="xcp0", address="10.0.0.1",
                          hypervisor="xenserver", hypervisor_version="8.3.0", state="connected"))
    for key, name, role in (("v0", "appliance", "unmanaged"), ("v1", "i-2-9-VM", "user"),
                            ("v2", "r-4-VM", "router"), ("v3", "worker", "worker")):
        inv.vms.append(Vm(key=key, target="xcp", host_key="h0", cluster_key="c1", name=name, cs_role=role,
                          power_state="running"))
        inv.vm_disks += [VmDisk(vm_key=key, target="xcp", device=f"d{d}", disk_type="disk") for d in range(9)]
    result = TargetResult(name="xcp", hypervisor="xenserver", endpoint="xcp", status="ok", inventory=inv)
    findings = by_rule(check(tmp_path, [result], "4.18"))
    assert [(f.object_key, f.observed, f.expected) for f in findings["data-volumes-per-vm"]] == [("v1", "8", "≤ 6")]


# -- the engine ---------------------------------------------------------------------------------
def test_release_resolution_and_limits() -> None:
    assert resolve("4.20").matrix_key == "4.20.2.0"
    assert resolve("4.19.1.2").matrix_key == "4.19.1.0"
    assert resolve("4.22").limits("xenserver", "8.4.0").max_data_volumes == 240
    assert resolve("4.20.0.0").limits("xenserver", "8.4.0").row.endswith("default")  # the 8.4.0 row is 4.20.1.0's
    assert resolve("4.20.1.0").limits("xenserver", "8.4.0").max_guests == 1000
    assert resolve("4.22").limits("vmware", "8.0.2.0").max_hosts == 64
    assert resolve("4.18.0.0").limits("vmware", "8.0.2.0").max_hosts == 32  # no parent lookup before 4.18.1.0
    assert resolve("4.22").limits("kvm", "9.0.0").max_data_volumes == 32
    # VMware: the exact row, else ONE parent (CloudStackVersion.getVMwareParentVersion), else default
    assert resolve("4.22").limits("vmware", "8.0.4.0").max_hosts == 32  # parent 8.0.4 has no row: default
    assert resolve("4.22").limits("vmware", "8.0.4.0").row == "VMware 8.0.4.0 → default"
    assert resolve("4.22").limits("vmware", "8.0.0.4").row == "VMware 8.0.0.4 → 8.0"
    assert resolve("4.22").limits("vmware", "8.0.1.1").row == "VMware 8.0.1.1 → 8.0.1"
    assert resolve("4.22").limits("vmware", "6.7.3").row == "VMware 6.7.3 → 6.7.3"
    assert resolve("4.22").limits("vmware", "6.5").max_hosts == 64 and resolve("4.22").limits("vmware", "6.9").max_hosts == 32
    for bad in ("4.30", "five", None):
        with pytest.raises(ConfigError):
            resolve(bad)


def test_rule_selection_fail_on_and_catalogue(tmp_path: Path) -> None:
    def small_old_hosts(root: ET.Element) -> None:  # 2 GB hosts on a release CloudStack has no class for
        for metrics in rows_of(root, "host_metrics"):
            metrics.set("memory__total", str(2 * 2**30))
        for host in rows_of(root, "host"):
            host.set("software_version", host.get("software_version", "").replace("'8.3.0'", "'6.0.50'"))
    result = xen(edited_pool(tmp_path, small_old_hosts))
    only = check(tmp_path, [result], only=["host-memory"])
    assert {f.rule_id for f in only} == {"host-memory"}
    skipped = check(tmp_path, [result], skip=["host-memory", "hypervisor-version-supported"])
    assert not {"host-memory", "hypervisor-version-supported"} & {f.rule_id for f in skipped}
    assert exit_code_for(only, "error") == 0 and exit_code_for(only, "warning") == 1  # host-memory is DOC: warning
    assert exit_code_for(skipped, "warning") == 1 and exit_code_for(skipped, "info") == 1
    assert exit_code_for(only, "never") == 0
    with pytest.raises(ConfigError, match="no rule"):
        check(tmp_path, [result], only=["no-such-rule"])
    for rule in select_rules():
        assert rule.requirement and rule.remediation and rule.reference and rule.severity in ("error", "warning", "info")
        assert rule.documentation.startswith(rule.requirement)


def test_every_rule_says_how_sure_it_is_and_where_it_is_written() -> None:
    """One basis per rule, and the severity is the basis's: CODE error, DOC warning, BP/INF info. A CODE, DOC or
    BP rule cites CloudStack's code or documentation with a line or method and the release tags it holds for."""
    from inventory.rulebook import BASES, CODE_REPO, DOCS_REPO
    expected = {"CODE": "error", "DOC": "warning", "BP": "info", "INF": "info"}
    for rule in select_rules():
        assert rule.basis in BASES and rule.severity == expected.get(rule.basis, rule.severity), rule.id
        assert rule.basis != "DIFF" or rule.id.startswith("reconcile-"), "only reconciliation declares its severity"
        assert rule.sources and rule.evidence, rule.id
        for source in rule.sources:
            if rule.basis not in ("INF", "DIFF") or source.repo:
                assert source.repo in (CODE_REPO, DOCS_REPO) and source.path and source.at and source.tags, rule.id
            if source.repo == DOCS_REPO:
                assert re.fullmatch(r"\d+(-\d+)?", source.at) and source.path.endswith(".rst"), (rule.id, source)
                assert re.search(r"4\.\d+", source.tags), (rule.id, source)
        if rule.basis in ("CODE", "DOC", "BP"):
            wanted = {"CODE": CODE_REPO, "DOC": DOCS_REPO, "BP": DOCS_REPO}[rule.basis]
            assert any(s.repo == wanted for s in rule.sources), (rule.id, "its basis needs a source of that kind")
        for field in rule.evidence:  # a column (table.column or table.raw_json.key), or a CloudStack setting
            known = field.startswith(("setting ", "[cloudstack]")) or field.split(".")[0] in {t.name for t in schema.TABLES}
            assert known, (rule.id, field)


def test_the_ledger_accounts_for_every_rule_and_every_requirement() -> None:
    """Every rule answers some reviewed requirement; every ledger entry names rules that exist, or says why not."""
    from inventory import ledger
    from inventory.rules import RULES
    named = {r for req in ledger.LEDGER for r in req.rules}
    assert named <= set(RULES), named - set(RULES)
    requirements = {r for r, rule in RULES.items() if rule.basis != "DIFF"}  # differences are no requirement
    assert requirements <= named, requirements - named
    for req in ledger.LEDGER:
        assert req.rules or req.not_checked, req.what
    counts = ledger.summary()
    assert counts["checked"] + counts["in part"] + counts["not checked"] == counts["documented"]
    assert counts["not checked"] == 2  # vnc_listen (quick guide only), the shared root credentials


def test_check_explain_prints_requirement_basis_sources_and_evidence() -> None:
    from typer.testing import CliRunner

    from cli.main import app
    result = CliRunner().invoke(app, ["check", "--explain", "xen-management-pif"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("xen-management-pif: The management PIF is neither a VLAN PIF nor a bond member.")
    assert "basis:       CODE — enforced by CloudStack's code" in text and "(findings are error)" in text
    assert "CitrixResourceBase.java getManagementNetwork" in text
    assert "  - host_nics.is_management" in text and "remediation:" in text
    unknown = CliRunner().invoke(app, ["check", "--explain", "no-such-rule"])
    assert unknown.exit_code == 2 and "no rule 'no-such-rule'" in unknown.output


@pytest.mark.heavy
def test_kvm_rules_on_the_real_libvirtd(real_domains: Any, sshd: Any, tmp_path: Path) -> None:
    """The real host (through sshd): no cloudstack-agent (error), cloudbr0 present, cloudbr7 not."""
    agent = tmp_path / "agent.properties"
    agent.write_text("zone=1\npod=1\ncluster=1\nguid=real-1\nprivate.network.device=cloudbr0\n"
                     "public.network.device=cloudbr7\n")
    result = KvmCollector(KvmTarget(name="real", hosts=("127.0.0.1",), ssh_port=sshd.port, ssh_key=sshd.client_key,
                                    known_hosts=sshd.known_hosts, agent_properties=str(agent))).collect()
    assert result.status == "ok", result.error
    findings = by_rule(check(tmp_path, [result], traffic_labels={"management": "cloudbr0", "public": "cloudbr7"}))
    assert [f.observed for f in findings["kvm-agent-running"]] == ["not-installed"]
    assert [f.expected for f in findings["traffic-labels-on-every-host"]] == ["cloudbr7"]
    assert [f.expected for f in findings["kvm-agent-devices-exist"]] == ["cloudbr7"]
    # unmanaged-901 is defined but stopped: not "already running", so not reported
    assert not {f.object_key for f in findings.get("unmanaged-vms", [])} & {
        v.key for v in result.inventory.vms if v.name == "unmanaged-901"}
    host = result.inventory.hosts[0]
    if host.dev_kvm and host.libvirt_hvm:
        assert "kvm-hardware-virtualisation" not in findings
    # The requirement facts, as this machine has them. The lab's libvirtd runs as `libvirtd -d`: no --listen.
    assert host.raw_json and "--listen" not in (host.raw_json["libvirtd"]["args"] or "")
    assert "libvirtd runs without --listen" in {f.message.split(": ", 1)[1] for f in findings["kvm-libvirtd-config"]}
    # agent.properties has a guid (CloudStack set it up) but no keystore beside it
    assert host.agent_certificates is False and [f.observed for f in findings["kvm-agent-tls"]] == ["missing"]
    # cloudbr0 holds only the guests' taps: no port the agent takes for a NIC
    assert [f.observed for f in findings["kvm-bridge-port-names"]] == ["no ports"]
    assert host.fqdn == subprocess.run(["hostname", "--fqdn"], capture_output=True, text=True).stdout.strip()
    assert ("kvm-fqdn" in findings) is ("." not in host.fqdn)
    if host.java_version:  # whatever Java this machine has: judged for 4.20 (17) and 4.19 (11)
        from inventory.rules.host_setup import java_major
        major = java_major(host.java_version)
        assert ("kvm-java-version" in findings) is (major != 17)
        assert ("kvm-java-version" in by_rule(check(tmp_path, [result], "4.19"))) is (major != 11)


# -- VMware rules on the vCenter simulator --------------------------------------------------------
def vmware(sim: Any, tls: tuple[Path, Path], name: str = "vc") -> TargetResult:
    from collectors.vmware import VmwareCollector, VmwareTarget
    os.environ["CSI_CHECK_VC"] = "pw"
    return VmwareCollector(VmwareTarget(name=name, host=sim.host, port=sim.port, username="u",
                                        password=Secret("env", "CSI_CHECK_VC"), ca_file=tls[0])).collect()


@pytest.mark.heavy
def test_vmware_rules_on_the_simulator(tmp_path: Path) -> None:
    import ssl

    from pyVim.connect import Disconnect, SmartConnect
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    from fixtures.vcsim import start_vcsim
    from fixtures.xapi.tls import self_signed
    tls = self_signed(tmp_path / "tls", name="vcenter")
    # DC0_C0: 9 hosts, DRS off (set at start: this simulator ignores DRS/HA reconfiguration); DC0_C1 likewise
    sim = start_vcsim(clusters=2, cluster_hosts=9, vms=1, username="u", password="pw", tls=tls, drs_off="DC0_C0",
                      ha_on="DC0_C0")
    try:
        si = SmartConnect(host=sim.host, port=sim.port, user="u", pwd="pw",
                          sslContext=ssl.create_default_context(cafile=str(tls[0])))
        content = si.RetrieveContent()
        host = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True).view[0]
        WaitForTask(host.EnterMaintenanceMode_Task(timeout=0))  # through the vSphere API
        parked = host._moId
        Disconnect(si)
        result = vmware(sim, tls)
    finally:
        sim.stop()
    findings = by_rule(check(tmp_path, [result], "4.20", traffic_labels={"management": "vSwitch0",
                                                                          "guest": "DC0_DVPG0", "public": "vSwitch9"}))
    # the simulator is vCenter 6.5 with ESXi 6.5: 4.20 no longer supports vSphere 6.5 (compat.rst @ 4.20; DOC)
    assert {f.severity for f in findings["vmware-version-supported"]} == {"warning"}
    assert all("no longer supported" in f.message for f in findings["vmware-version-supported"])
    assert "vmware-version-supported" not in by_rule(check(tmp_path, [result], "4.18.0.0"))  # 6.5 listed there
    (vcenter,) = findings["vcenter-version-supported"]  # vCenter 6.5 likewise
    assert vcenter.observed == "6.5.0" and "vcenter-version-supported" not in by_rule(
        check(tmp_path, [result], "4.18.0.0"))
    # 9 hosts per cluster: under the 6.5 row's 64 (CODE), over the 8 configuration.rst asks for (DOC)
    assert "vmware-hosts-per-cluster" not in findings
    assert {(f.cluster, f.severity, f.observed) for f in findings["cluster-size"]} == {
        (c.key, "warning", "9") for c in result.inventory.clusters}
    c1 = next(c.key for c in result.inventory.clusters if c.name == "DC0_C1")
    assert [f.cluster for f in findings["vmware-cluster-ha"]] == [c1]  # DC0_C0 has HA on (DRS off is no finding)
    assert [f.object_key for f in findings["host-state"]] == [parked]
    assert "vmware-management-portgroup" not in findings  # every simulated host has vmk0 on Management Network
    # the simulator's VMs (DC0_C0_RP0_VM0 …) are no CloudStack instances: every cluster holds others' VMs
    assert {f.object_key for f in findings["vmware-dedicated-cluster"]} == {c.key for c in result.inventory.clusters}
    renamed = by_rule(check(tmp_path, [result], "4.20", settings={"vmware.management.portgroup": "Mgmt"}))
    assert len(renamed["vmware-management-portgroup"]) == len(result.inventory.hosts)
    # The simulator's ESXi: vmk0 carries management only (no vMotion), its one local disk is 32 GiB (< 36 GB);
    # its firewall's gdbserver ruleset (which CloudStack enables) opens 50000-50999, the default VNC range.
    n = len(result.inventory.hosts)
    assert {f.observed for f in findings["vmware-management-vmk-services"]} == {"management"}
    assert len(findings["vmware-management-vmk-services"]) == n
    assert {f.observed for f in findings["host-local-disk"]} == {str(32 * 2**30)} and len(findings["host-local-disk"]) == n
    assert "vmware-vnc-firewall" not in findings and "vmware-esxi-not-esx" not in findings
    assert "vmware-management-standard-vswitch" not in findings
    wider = by_rule(check(tmp_path, [result], "4.20", settings={"vmware.additional.vnc.portrange.size": "10000"}))
    assert {f.observed for f in wider["vmware-vnc-firewall"]} == {"closed: 51000-59999"}
    # vSwitch0 and the dvPortgroup exist everywhere; vSwitch9 nowhere
    assert {f.expected for f in findings["traffic-labels-on-every-host"]} == {"vSwitch9"}
    assert len(findings["traffic-labels-on-every-host"]) == len(result.inventory.hosts)


@pytest.mark.heavy
def test_vmware_hosts_set_up_as_the_guide_says(tmp_path: Path) -> None:
    """The simulator with vmk0 selected for vMotion too and 40 GB local disks passes what it failed above."""
    from fixtures.vcsim import start_vcsim
    from fixtures.xapi.tls import self_signed
    tls = self_signed(tmp_path / "tls", name="vcenter")
    sim = start_vcsim(clusters=1, cluster_hosts=2, standalone_hosts=0, vms=1, username="u", password="pw", tls=tls,
                      vmotion_on_vmk0=True, local_disk_gb=40)
    try:
        result = vmware(sim, tls)
    finally:
        sim.stop()
    findings = by_rule(check(tmp_path, [result], "4.20"))
    assert not {"vmware-management-vmk-services", "host-local-disk", "vmware-management-portgroup"} & set(findings)
    assert {h.local_disk_bytes for h in result.inventory.hosts} == {40 * 10**9 // 512 * 512}


@pytest.mark.heavy
def test_vmware_esxi_target_and_many_hosts(tmp_path: Path) -> None:
    from fixtures.vcsim import start_vcsim
    from fixtures.xapi.tls import self_signed
    tls = self_signed(tmp_path / "tls", name="vcenter")
    esx = start_vcsim(esx=True, username="u", password="pw", tls=tls)
    try:
        refused = vmware(esx, tls, "esx")
    finally:
        esx.stop()
    big = start_vcsim(clusters=1, cluster_hosts=65, standalone_hosts=0, vms=1, username="u", password="pw", tls=tls)
    try:
        crowded = vmware(big, tls)
    finally:
        big.stop()
    findings = by_rule(check(tmp_path, [refused, crowded], "4.20"))
    assert [f.target for f in findings["vmware-target-is-vcenter"]] == ["esx"]
    (over,) = findings["vmware-hosts-per-cluster"]
    assert over.observed == "65" and over.expected == "≤ 64"  # the VMware 6.5 row: 64 hosts (since 4.13.0.0)


def esx_hosts(*hosts: dict[str, Any]) -> TargetResult:
    """vCenter's answer for a few hosts (as the collector slims it), through the real normaliser: the corners the
    simulator cannot make. Each host: name, vnics {device: portgroup or ("dv", key)}, services {nicType: [devices]}."""
    from collectors.vmware_normalise import normalise_vcenter
    rows = []
    for h in hosts:
        vnics = [{"device": d, "key": f"key-vim.host.VirtualNic-{d}", "portgroup": None if isinstance(pg, tuple) else pg,
                  "dvPortgroupKey": pg[1] if isinstance(pg, tuple) else None} for d, pg in h["vnics"].items()]
        rows.append({
            "_moid": h["name"], "_type": "HostSystem", "name": h["name"], "parent": "domain-c1",
            "config.product": {"version": h.get("version", "8.0.2"), "apiVersion": "8.0.2.0",
                               "build": h.get("build", "22380479"), "productLineId": h.get("line", "embeddedEsx")},
            "summary.hardware": {"memorySize": 64 * 2**30},
            "config.network.vnic": [{"device": d, "portgroup": v["portgroup"] or "",
                                     "spec": {"ip": {"ipAddress": "10.0.0.1", "dhcp": False}}}
                                    for d, v in zip(h["vnics"], vnics, strict=True)],
            "config.virtualNicManagerInfo.netConfig": [
                {"nicType": kind, "candidateVnic": [{**v, "key": f"{kind}.{v['key']}"} for v in vnics],
                 "selectedVnic": [f"{kind}.key-vim.host.VirtualNic-{d}" for d in devices]}
                for kind, devices in h["services"].items()]})
    raw = {"hosts": rows, "clusters": [{"_moid": "domain-c1", "name": "C1", "host": [h["name"] for h in hosts]}],
           "dvportgroups": [{"_moid": "dvportgroup-9", "key": "dvportgroup-9", "name": "dv-mgmt"}]}
    return TargetResult(name="vc", hypervisor="vmware", endpoint="vc", status="ok",
                        inventory=normalise_vcenter(raw, "vc"))


def test_vmware_management_portgroup_as_hostmo_finds_it(tmp_path: Path) -> None:
    """HostMO.getHyperHostNetworkSummary: a management-capable VMkernel NIC whose port group — or dvPortgroup —
    equals vmware.management.portgroup, ignoring case."""
    result = esx_hosts(
        {"name": "esx-lower", "vnics": {"vmk0": "management network"}, "services": {"management": ["vmk0"]}},
        {"name": "esx-dvs", "vnics": {"vmk0": ("dv", "dvportgroup-9")}, "services": {"management": ["vmk0"]}},
        {"name": "esx-storage", "vnics": {"vmk1": "Storage"}, "services": {"management": ["vmk1"]}})
    default = {f.object_key: f for f in by_rule(check(tmp_path, [result], "4.22"))["vmware-management-portgroup"]}
    assert set(default) == {"esx-dvs", "esx-storage"} and default["esx-storage"].observed == "vmk1 on Storage"
    assert "'Management Network' (vmware.management.portgroup, CloudStack's default)" in default["esx-dvs"].message
    on_dvs = by_rule(check(tmp_path, [result], "4.22", settings={"vmware.management.portgroup": "DV-Mgmt"}))
    assert {f.object_key for f in on_dvs["vmware-management-portgroup"]} == {"esx-lower", "esx-storage"}
    assert "[cloudstack.settings] in the config" in on_dvs["vmware-management-portgroup"][0].message


# -- KVM rules whose failing case needs host facts one machine cannot show at once ---------------
def kvm_from_recorded(tmp_path: Path, variants: list[dict[str, Any]]) -> TargetResult:
    """Hosts normalised by the real normaliser from recorded libvirt + SSH output (tests/test_kvm_normalise.py),
    each with its own edits: the corner cases no single real host can show side by side."""
    import json as _json

    from tests.test_kvm_normalise import FACTS, LINKS, ok, raw
    answers = {}
    for index, edit in enumerate(variants):
        facts = dict(FACTS)
        links = [dict(link) for link in LINKS]
        for link in links:
            link["addr_info"] = [dict(a, local=a["local"].replace("10.1.1.21", f"10.1.1.{21 + index}"),
                                      **({"dynamic": True} if edit.get("dhcp_management") and
                                         a["local"] == "10.1.1.21" else {}))
                                 for a in link.get("addr_info", [])]
        links += edit.get("extra_links", [])
        facts["links"] = ok(_json.dumps(links))
        facts.update(edit.get("facts", {}))
        props = facts["agent_properties"]
        facts["agent_properties"] = ok(props["out"].replace("guid=abc", f"guid=host{index}"))  # one guid each
        data = raw(facts)
        data["address"] = f"10.1.1.{21 + index}"
        data["capabilities"] = data["capabilities"].replace("4c4c4544-0000-1111-2222-333333333333",
                                                            f"4c4c4544-0000-1111-2222-33333333333{index}")
        data.update(edit.get("raw", {}))
        answers[f"h{index}"] = data
    target = KvmTarget(name="kvm", hosts=tuple(answers), cluster="c1")
    return TargetResult(name="kvm", hypervisor="kvm", endpoint="recorded", status="ok",
                        inventory=KvmCollector.normalise(answers, target))


def test_kvm_host_fact_rules(tmp_path: Path) -> None:
    from tests.test_kvm_normalise import AGENT, ok
    variants = [
        {},                                                                   # the reference host: passes all
        {"facts": {"os_release": ok('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n'),   # another distribution
                   "distro_release": ok("DISTRIB_ID=Ubuntu\n")}},
        {"facts": {"agent_properties": ok(AGENT.replace("cluster=3", "cluster=4"))}},      # agent in another cluster
        {"facts": {"cpu_virt": ok("")}, "raw": {"capabilities": "<capabilities><host><cpu><arch>x86_64</arch>"
                   "<model>Cascadelake-Server</model><vendor>Intel</vendor></cpu></host>"
                   "<guest><os_type>xen</os_type></guest></capabilities>"}},     # no hvm guests, no /dev/kvm
        {"facts": {"timesync": ok("no\n")}, "raw": {"lib_version": 1001000}},  # clock unsynchronised, libvirt 1.1
        {"extra_links": [{"ifname": "eth9", "link_type": "ether", "flags": ["UP", "LOWER_UP"],
                          "addr_info": [{"family": "inet", "local": "169.254.3.3", "prefixlen": 16, "scope": "global"}]}]},
        {"dhcp_management": True},                                             # management address from DHCP
    ]
    result = kvm_from_recorded(tmp_path, variants)
    index_of = {h.key: str(int(h.address.rsplit(".", 1)[1]) - 21) for h in result.inventory.hosts}
    findings = by_rule(check(tmp_path, [result], "4.20"))

    def hosts_in(rule: str) -> list[str]:
        return sorted(index_of[f.object_key] for f in findings.get(rule, []))
    assert set(hosts_in("kvm-cluster-same-os")) == {"1"}            # Ubuntu 22.04 among Rocky Linux 9.4 hosts
    assert hosts_in("kvm-cluster-same-os-version") == ["1"]         # 22.04 where its mates run 9.4
    assert hosts_in("kvm-static-management-address") == ["6"]
    assert hosts_in("kvm-agent-settings-agree") == ["2"]            # cluster=4 while its mates say 3
    assert hosts_in("kvm-hardware-virtualisation") == ["3"]
    assert hosts_in("time-synchronised") == ["4"]
    assert hosts_in("kvm-libvirt-minimum") == ["4"] and findings["kvm-libvirt-minimum"][0].observed == "1.1.0"
    assert hosts_in("kvm-cluster-same-versions") == ["4"]
    assert hosts_in("kvm-link-local-free") == ["5"]
    # the reference host breaks nothing host-specific (duplicate MACs/UUIDs come from the recorded domain on all)
    assert "0" not in {index_of.get(f.object_key) for rule, items in findings.items() for f in items
                       if rule not in ("duplicate-mac", "duplicate-uuid", "unmanaged-vms")}


@pytest.mark.parametrize("brand, version, text_short, known", [
    ("XCP-ng", "8.3.0", "8.3", True), ("Citrix Hypervisor", "8.2.1", "8.2", True), ("XenServer", "8.4.0", "8.4", True),
    ("XCP-ng", "6.0.50", "6.0", False),   # XCP-ng is mapped only from 6.4 on
    ("XCP", "1.6.10", "1.6", True), ("XCP", "5.6.100", "", True), ("XCP", "2.1.0", "2.1", False),
    ("XCP_Kronos", "1.6.0", "", True),
    ("XenServer", "5.6.100", "5.6 SP2", True), ("XenServer", "5.6.100", "5.6 SP3", False),
    ("XenServer", "6.2.0", "6.2", True), ("XenServer", "6.3.0", "6.3", False), ("FooHV", "8.2.0", "8.2", False),
])
def test_xen_resource_class_follows_brand_and_version(tmp_path: Path, brand: str, version: str, text_short: str,
                                                      known: bool) -> None:
    """XcpServerDiscoverer.createServerResource: brand and version together (and 5.6.100's short text)."""
    def rebrand(root: ET.Element) -> None:
        for host in rows_of(root, "host"):
            sv = host.get("software_version", "").replace("'XCP-ng'", f"'{brand}'").replace("'8.3.0'", f"'{version}'")
            host.set("software_version", sv[:-1] + f" ('product_version_text_short' '{text_short}'))")
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, rebrand, hosts=1, vms=2))], "4.22"))
    assert ("xen-version-known-to-cloudstack" in findings) is not known, findings.get("xen-version-known-to-cloudstack")


def test_kvm_host_setup_rules(tmp_path: Path) -> None:
    """Recorded host output (tests/test_kvm_normalise.py FACTS: Rocky 9.4 set up as the guide says) through the real
    normaliser, one deviation per host."""
    from tests.test_kvm_normalise import FACTS, ok
    libvirtd_bad = ok('listen_tcp = 1\nmdns_adv = 0\n')
    sockets_live = ok(FACTS["libvirtd_sockets"]["out"].replace("libvirtd.socket=masked", "libvirtd.socket=enabled")
                      .replace("--listen", ""))
    ubuntu = ok('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n')
    variants = [
        {},                                                                     # 0: passes all
        {"facts": {"fqdn": ok("kvm22\n")}},                                      # 1: no domain
        {"facts": {"java": ok('openjdk version "11.0.22" 2024-01-16\n')}},        # 2: Java 11
        {"facts": {"selinux": ok("mode=Enforcing\nSELINUX=enforcing\n")}},       # 3: SELinux enforcing
        {"facts": {"libvirtd_conf": libvirtd_bad, "libvirtd_sockets": sockets_live}},  # 4: TCP, no --listen …
        {"facts": {"agent_certificates": ok("uefi.properties\n")}},               # 5: no certificates
        {"facts": {"firewall": ok("firewalld=active\n")}},                        # 6: firewalld on
        {"facts": {"os_release": ubuntu, "distro_release": ok("DISTRIB_ID=Ubuntu\n"),  # 7: UFW dropping forwards
                   "firewall": ok('/etc/default/ufw:DEFAULT_FORWARD_POLICY="DROP"\n/etc/ufw/ufw.conf:ENABLED=yes\n')}},
        {"facts": {"aria2": {"rc": 127, "out": ""}}},                              # 8: no aria2
    ]
    result = kvm_from_recorded(tmp_path, variants)
    index_of = {h.key: str(int(h.address.rsplit(".", 1)[1]) - 21) for h in result.inventory.hosts}

    def hosts_in(findings: dict[str, list[Any]], rule: str) -> list[str]:
        return sorted(index_of[f.object_key] for f in findings.get(rule, []))
    at_420 = by_rule(check(tmp_path, [result], "4.20"))
    assert hosts_in(at_420, "kvm-fqdn") == ["1"]
    assert hosts_in(at_420, "kvm-java-version") == ["2"]
    assert hosts_in(at_420, "kvm-security-policies") == ["3"]
    problems = {f.message.split(": ", 1)[1] for f in at_420["kvm-libvirtd-config"]}
    assert hosts_in(at_420, "kvm-libvirtd-config") == ["4"] * 4 and problems == {
        "libvirtd.conf listen_tcp = 1", "libvirtd runs without --listen", "libvirtd socket units not masked: "
        "libvirtd.socket", "libvirt.conf has no remote_mode=\"legacy\""}
    assert hosts_in(at_420, "kvm-agent-tls") == ["5"] and at_420["kvm-agent-tls"][0].severity == "warning"
    assert hosts_in(at_420, "kvm-firewalld-off") == ["6"] and at_420["kvm-firewalld-off"][0].severity == "info"
    assert "kvm-ufw-forward-policy" not in at_420  # the guide says it from 4.21.0.0 on
    assert "kvm-aria2" not in at_420               # only where direct download is in use
    at_419 = by_rule(check(tmp_path, [result], "4.19"))
    assert sorted(set(hosts_in(at_419, "kvm-java-version"))) == [str(i) for i in range(9) if i != 2]  # Java 11 there
    # 4.19's guide has no remote_mode step
    assert not any("remote_mode" in f.message for f in at_419.get("kvm-libvirtd-config", []))
    at_422 = by_rule(check(tmp_path, [result], "4.22", features=["direct-download"],
                           settings={"ca.plugin.root.auth.strictness": "false"}))
    assert hosts_in(at_422, "kvm-ufw-forward-policy") == ["7"] and hosts_in(at_422, "kvm-aria2") == ["8"]
    assert "kvm-agent-tls" not in at_422  # strictness off: an agent without certificates may still connect


def test_kvm_libvirtd_remote_mode_on_suse_15_sp7_from_4_21(tmp_path: Path) -> None:
    """kvm.rst names EL9 and Ubuntu 24.04 for remote_mode="legacy" from 4.20.0.0 (475 at 4.20.0.0, 520 at 4.20.3.0),
    SUSE 15 SP7 only from 4.21.0.0 (523 at 4.21.0.0, 521 at 4.22.0.1)."""
    from tests.test_kvm_normalise import FACTS, ok
    conf = ok(FACTS["libvirtd_conf"]["out"].replace('libvirt.conf:remote_mode="legacy"\n', ""))
    suse = {"facts": {"os_release": ok('NAME="SLES"\nID="sles"\nVERSION_ID="15.7"\n'),
                      "distro_release": ok(""), "libvirtd_conf": conf}}
    result = kvm_from_recorded(tmp_path, [suse])
    for version in ("4.20.0.0", "4.20.3.0"):
        assert not any("remote_mode" in f.message
                       for f in by_rule(check(tmp_path, [result], version)).get("kvm-libvirtd-config", [])), version
    for version in ("4.21.0.0", "4.22"):
        (legacy,) = by_rule(check(tmp_path, [result], version))["kvm-libvirtd-config"]
        assert legacy.expected == "legacy", version


def test_kvm_libvirtd_sockets_on_ubuntu_from_4_20_1(tmp_path: Path) -> None:
    """kvm.rst asks to mask libvirtd's socket units on EL 8 and SUSE at every tag, on Ubuntu and Debian from 4.20.1.0."""
    from tests.test_kvm_normalise import FACTS, ok
    live = ok(FACTS["libvirtd_sockets"]["out"].replace("libvirtd.socket=masked", "libvirtd.socket=enabled"))
    ubuntu = {"facts": {"os_release": ok('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n'),
                        "distro_release": ok("DISTRIB_ID=Ubuntu\n"), "libvirtd_sockets": live}}
    result = kvm_from_recorded(tmp_path, [ubuntu])
    assert "kvm-libvirtd-config" not in by_rule(check(tmp_path, [result], "4.20.0.0"))
    (masked,) = by_rule(check(tmp_path, [result], "4.20.1.0"))["kvm-libvirtd-config"]
    assert masked.observed == "libvirtd.socket"
    el = kvm_from_recorded(tmp_path, [{"facts": {"libvirtd_sockets": live}}])  # Rocky 9: every release
    assert "kvm-libvirtd-config" in by_rule(check(tmp_path, [el], "4.18.0.0"))


def test_kvm_cluster_same_os_compares_host_os_as_cloudstack_does(tmp_path: Path) -> None:
    """LibvirtServerDiscoverer compares Host.OS — /etc/redhat-release's name, not os-release's ID — ignoring case;
    from 4.19.1.0 Rocky, Red Hat, Oracle and Alma count as one (apparent merge of apache/cloudstack#8641)."""
    from tests.test_kvm_normalise import ok
    rhel_named = {"facts": {"os_release": ok('NAME="Oracle Linux Server"\nID="ol"\nVERSION_ID="9.4"\n'),
                            "distro_release": ok("redhat-release=Red Hat Enterprise Linux release 9.4 (Plow)\n")}}
    rhel = {"facts": {"os_release": ok('NAME="Red Hat Enterprise Linux"\nID="rhel"\nVERSION_ID="9.4"\n'),
                      "distro_release": ok("redhat-release=Red Hat Enterprise Linux release 9.4 (Plow)\n")}}
    same_name = kvm_from_recorded(tmp_path, [rhel, rhel_named])  # IDs rhel and ol, one Host.OS
    assert "kvm-cluster-same-os" not in by_rule(check(tmp_path, [same_name], "4.18.0.0"))
    rocky_and_rhel = kvm_from_recorded(tmp_path, [{}, {}, rhel])  # Rocky Linux ×2, Red Hat Enterprise Linux
    (odd,) = by_rule(check(tmp_path, [rocky_and_rhel], "4.19.0.0"))["kvm-cluster-same-os"]
    assert (odd.observed, odd.expected, odd.severity) == ("Red Hat Enterprise Linux", "Rocky Linux", "error")
    assert "kvm-cluster-same-os" not in by_rule(check(tmp_path, [rocky_and_rhel], "4.19.1.0"))
    ubuntu = {"facts": {"os_release": ok('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n'),
                        "distro_release": ok("DISTRIB_ID=Ubuntu\n")}}
    mixed = kvm_from_recorded(tmp_path, [{}, {}, ubuntu])
    assert [f.observed for f in by_rule(check(tmp_path, [mixed], "4.22"))["kvm-cluster-same-os"]] == ["Ubuntu"]


def test_kvm_link_local_follows_control_cidr_and_routes(tmp_path: Path) -> None:
    """BridgeVifDriver takes control.cidr (agent.properties, else the global setting) for cloud0 and deletes that
    CIDR's routes on other devices: an address or a route for it elsewhere is in the way."""
    from tests.test_kvm_normalise import FACTS, ok
    routes = FACTS["routes"]["out"][:-1] + ',{"dst":"169.254.0.0/16","dev":"eno1"}]'
    eth9 = {"ifname": "eth9", "link_type": "ether", "flags": ["UP", "LOWER_UP"],
            "addr_info": [{"family": "inet", "local": "100.64.3.3", "prefixlen": 16, "scope": "global"}]}
    result = kvm_from_recorded(tmp_path, [{}, {"facts": {"routes": ok(routes)}}, {"extra_links": [eth9]}])
    index_of = {h.key: str(int(h.address.rsplit(".", 1)[1]) - 21) for h in result.inventory.hosts}
    default = by_rule(check(tmp_path, [result], "4.22"))["kvm-link-local-free"]
    assert [(index_of[f.object_key], f.observed) for f in default] == [("1", "route 169.254.0.0/16 on eno1")]
    assert "169.254.0.0/16 (control.cidr, CloudStack's default)" in default[0].message
    moved = by_rule(check(tmp_path, [result], "4.22", settings={"control.cidr": "100.64.0.0/16"}))
    assert [(index_of[f.object_key], f.observed) for f in moved["kvm-link-local-free"]] == [("2", "eth9 100.64.3.3/16")]


def test_kvm_network_and_cluster_rules_on_recorded_hosts(tmp_path: Path) -> None:
    import json as _json

    from tests.test_kvm_normalise import AGENT, DOMAIN, DOMCAPS, LINKS, ok
    renamed = _json.dumps([dict(link, ifname="uplink0") if link["ifname"] == "bond0" else
                           dict(link, master="uplink0") if link.get("master") == "bond0" else link for link in LINKS])
    ovs_agent = ok(AGENT + "network.bridge.type=openvswitch\n")
    uefi_domain = DOMAIN.replace("<os><type arch='x86_64' machine='pc'>hvm</type></os>",
                                 "<os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>"
                                 "/usr/share/edk2/ovmf/OVMF_CODE.fd</loader></os>").replace("AAAAAAAA", "BBBBBBBB")
    variants = [
        {"raw": {"domains": [{"xml": uefi_domain, "stats": {"state.state": 1}}]}},  # 0: runs a UEFI instance
        {"facts": {"links": ok(renamed)}},                                           # 1: cloudbr0's port is uplink0
        {"facts": {"agent_properties": ovs_agent, "ovs_version": ok("ovs-vsctl (Open vSwitch) 1.6.0\n")}},  # 2
        {"facts": {"agent_properties": ovs_agent, "ovs_version": {"rc": 127, "out": ""}}},                  # 3
        {"facts": {"agent_connections": ok("")}},                                    # 4: agent up, not connected
        {"facts": {"agent_properties": ok(AGENT + "guest.cpu.mode=host-passthrough\n")}},  # 5
        {"raw": {"capabilities": "<capabilities><host><uuid>4c4c4544-0000-1111-2222-333333333336</uuid><cpu>"
                                 "<arch>aarch64</arch></cpu></host><guest><os_type>hvm</os_type></guest></capabilities>"}},
        {"raw": {"domain_capabilities": DOMCAPS.replace("supported='yes'><value>/usr", "supported='no'><value>/usr")}},
    ]
    result = kvm_from_recorded(tmp_path, variants)
    index_of = {h.key: str(int(h.address.rsplit(".", 1)[1]) - 21) for h in result.inventory.hosts}

    def hosts_in(findings: dict[str, list[Any]], rule: str) -> list[str]:
        return sorted(index_of[f.object_key] for f in findings.get(rule, []))
    at_422 = by_rule(check(tmp_path, [result], "4.22"))
    assert hosts_in(at_422, "kvm-bridge-port-names") == ["1"] and at_422["kvm-bridge-port-names"][0].observed == "uplink0"
    assert hosts_in(at_422, "kvm-openvswitch") == ["2", "2", "3", "3"]  # old or absent OVS; bridge module loaded
    assert hosts_in(at_422, "kvm-agent-connected") == ["4"]
    assert hosts_in(at_422, "kvm-guest-cpu-consistent") == ["5"] and at_422["kvm-guest-cpu-consistent"][0].basis == "BP"
    assert hosts_in(at_422, "cluster-same-arch") == ["6"] and at_422["cluster-same-arch"][0].severity == "error"
    assert hosts_in(at_422, "kvm-uefi-firmware") == ["7"]  # host 0 runs a UEFI instance: its mates need firmware
    at_419 = by_rule(check(tmp_path, [result], "4.19.0.0"))
    assert "cluster-same-arch" not in at_419 and "kvm-uefi-firmware" not in at_419  # from 4.20.0.0 / 4.19.1.0
    no_uefi = kvm_from_recorded(tmp_path, variants[1:])
    assert "kvm-uefi-firmware" not in by_rule(check(tmp_path, [no_uefi], "4.22"))


def add_row(root: ET.Element, table: str, **fields: str) -> None:
    found = root.find(f"table[@name='{table}']")
    assert found is not None
    ET.SubElement(found, "row", {"ref": fields["ref"], "_ref": fields["ref"], **fields})


def bond_hosts(root: ET.Element, members: dict[int, tuple[str, str]]) -> None:
    """Bond two NICs on each host named in ``members`` for a network "cloud-guest", as XAPI records a bond."""
    add_row(root, "network", ref="OpaqueRef:net-bond", uuid="net-bond-uuid", name__label="cloud-guest",
            bridge="xapi9", MTU="1500", PIFs="()", VIFs="()", other_config="()")
    hosts = rows_of(root, "host")
    for h, (a, b) in members.items():
        href, bond, master = hosts[h].get("ref", ""), f"OpaqueRef:bond-{h}", f"OpaqueRef:bond-pif-{h}"
        for device in (a, b):
            add_row(root, "PIF", ref=f"OpaqueRef:pif-{h}-{device}", uuid=f"pif-{h}-{device}", device=device, host=href,
                    network="OpaqueRef:NULL", physical="true", VLAN="-1", management="false", bond_slave_of=bond,
                    bond_master_of="()", MAC="", MTU="1500", IP="", netmask="", ip_configuration_mode="None",
                    currently_attached="true", metrics="OpaqueRef:NULL")
        add_row(root, "PIF", ref=master, uuid=f"bondpif-{h}", device="bond0", host=href, network="OpaqueRef:net-bond",
                physical="false", VLAN="-1", management="false", bond_slave_of="OpaqueRef:NULL",
                bond_master_of=f"('{bond}')", MAC="", MTU="1500", IP="", netmask="", ip_configuration_mode="None",
                currently_attached="true", metrics="OpaqueRef:NULL")
        add_row(root, "Bond", ref=bond, uuid=f"bond-{h}", master=master, mode="active-backup",
                slaves=f"('OpaqueRef:pif-{h}-{a}' 'OpaqueRef:pif-{h}-{b}')", other_config="()")


def test_xen_pool_rules_on_edited_pools(tmp_path: Path) -> None:
    """Bonds cabled alike, updates equal, no VM-level HA, the Tools SR on 8.2, the bridge backend for security groups:
    XAPI records of an edited pool, served by the fixture server."""
    def edit(root: ET.Element) -> None:
        bond_hosts(root, {0: ("eth2", "eth3"), 1: ("eth2", "eth3"), 2: ("eth2", "eth4")})   # host 2 cabled otherwise
        for n, name in enumerate(("XS84E001", "XS84E002")):
            add_row(root, "pool_update", ref=f"OpaqueRef:upd-{n}", uuid=f"upd-{n}", name__label=name, version="1.0",
                    hosts="()", other_config="()")
        for h, host in enumerate(rows_of(root, "host")):
            host.set("updates", "('OpaqueRef:upd-0' 'OpaqueRef:upd-1')" if h < 2 else "('OpaqueRef:upd-0')")
        next(v for v in rows_of(root, "VM") if v.get("name__label") == "i-5-1003-VM").set("ha_restart_priority",
                                                                                           "restart")
    result = xen(edited_pool(tmp_path, edit))
    findings = by_rule(check(tmp_path, [result], "4.22"))
    hosts = {h.key: h.name for h in result.inventory.hosts}
    (bond,) = findings["xen-bonds-alike"]
    assert (hosts[bond.object_key], bond.observed) == ("xcp03", "cloud-guest: eth2+eth4 (active-backup)")
    (behind,) = findings["xen-pool-same-updates"]
    assert (hosts[behind.object_key], behind.observed, behind.expected) == ("xcp03", "XS84E001", "XS84E001, XS84E002")
    (ha,) = findings["xen-vm-ha-off"]
    assert (ha.observed, ha.severity) == ("restart", "warning")
    assert "xen-sg-bridge-backend" not in findings and "xen-tools-sr" not in findings  # no SG zone; XCP-ng
    with_sg = by_rule(check(tmp_path, [result], "4.22", features=["security-groups"]))
    assert {f.observed for f in with_sg["xen-sg-bridge-backend"]} == {"openvswitch"}
    assert len(with_sg["xen-sg-bridge-backend"]) == 3 and with_sg["xen-sg-bridge-backend"][0].severity == "error"
    clean = xen(edited_pool(tmp_path, lambda root: bond_hosts(root, {0: ("eth2", "eth3"), 1: ("eth2", "eth3"),
                                                                     2: ("eth2", "eth3")})))
    assert not {"xen-bonds-alike", "xen-pool-same-updates", "xen-vm-ha-off"} & set(by_rule(check(tmp_path, [clean])))

    def citrix_82(root: ET.Element, tools: bool, backend: str) -> None:
        for host in rows_of(root, "host"):
            host.set("software_version", host.get("software_version", "").replace("'XCP-ng'", "'Citrix Hypervisor'")
                     .replace("'8.3.0'", "'8.2.1'").replace("'openvswitch'", f"'{backend}'"))
        if not tools:
            next(sr for sr in rows_of(root, "SR") if sr.get("name__label") == "XenServer Tools").set(
                "name__label", "ISO library")
    without = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, lambda root: citrix_82(root, False, "bridge")))],
                            "4.22", features=["security-groups"]))
    assert [f.severity for f in without["xen-tools-sr"]] == ["info"] and "xen-sg-bridge-backend" not in without
    with_tools = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, lambda root: citrix_82(root, True, "bridge")))]))
    assert "xen-tools-sr" not in with_tools


def test_xen_hardware_virtualisation(tmp_path: Path) -> None:
    def no_hvm(root: ET.Element) -> None:
        rows_of(root, "host")[1].set("capabilities", "('xen-3.0-x86_64' '')")
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, no_hvm))]))
    assert len(findings["xen-hardware-virtualisation"]) == 1


def test_cluster_same_cpu_compares_the_cpu_count(tmp_path: Path) -> None:
    """"The CPUs must be of the same type, count, and feature flags" (_requirements.rst:72-73): one host of the pool
    has 24 cores on 2 sockets where its mates have 32."""
    def fewer_cores(root: ET.Element) -> None:
        host = rows_of(root, "host")[2]
        host.set("cpu_info", host.get("cpu_info", "").replace("('cpu_count' '32')", "('cpu_count' '24')"))
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, fewer_cores))]))
    (odd,) = findings["cluster-same-cpu"]
    assert (odd.observed, odd.expected) == ("12", "16") and "cpu_cores" in odd.message
    assert "cluster-same-cpu" not in by_rule(check(tmp_path, [xen(edited_pool(tmp_path, lambda root: None))]))


def test_xen_pool_mid_upgrade(tmp_path: Path) -> None:
    def upgrade_one(root: ET.Element) -> None:
        host = rows_of(root, "host")[2]
        host.set("software_version", host.get("software_version", "").replace("8.3.0", "8.3.1"))
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, upgrade_one))]))
    (odd,) = findings["cluster-same-hypervisor-version"]
    assert (odd.observed, odd.expected) == ("8.3.1", "8.3.0")


def test_the_view_gives_back_the_records_the_scan_wrote(tmp_path: Path) -> None:
    """Rows become the model's records again: booleans from 0/1 (None stays None), raw_json a dict."""
    from inventory.model import Cluster, EndpointResult, Host, HostStorage, Inventory, Storage, Vm
    from inventory.view import Endpoint, InventoryView, Target
    inv = Inventory()
    inv.clusters.append(Cluster(key="c1", target="t", name="c1", hypervisor="kvm", ha_enabled=False,
                                raw_json={"pool": {"nested": [1, 2]}}))
    inv.hosts += [Host(key=f"h{i}", target="t", cluster_key="c1", name=f"h{i}", address="a", hypervisor="kvm",
                       hvm=hvm, time_synced=not hvm if hvm is not None else None, memory_bytes=2**40,
                       raw_json={"i": i} if i else None) for i, hvm in enumerate((True, False, None))]
    inv.vms.append(Vm(key="v1", target="t", host_key="h0", cluster_key="c1", name="i-2-3-VM", is_template=True))
    inv.storage.append(Storage(key="s1", target="t", name="nfs", kind="nfs", shared=True, capacity_bytes=10))
    inv.host_storage.append(HostStorage(host_key="h0", target="t", storage_key="s1", attached=False))
    result = TargetResult(name="t", hypervisor="kvm", endpoint="h0,h1", status="ok", duration_s=1.5, api_calls=7,
                          inventory=inv, endpoints=[EndpointResult("t", "h0", "ok", None, 0.5, 3)],
                          detail={"version": "x"})
    store = open_store(tmp_path / "view.db")
    scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), [result])
    view = InventoryView(store, scan_id, resolve("4.20"))
    assert view.hosts == tuple(inv.hosts) and view.clusters == tuple(inv.clusters) and view.vms == tuple(inv.vms)
    assert view.storage == tuple(inv.storage) and view.host_storage == tuple(inv.host_storage)
    assert [h.hvm for h in view.hosts] == [True, False, None] and view.hosts[0].time_synced is False
    assert view.targets == (Target("t", "kvm", "h0,h1", "ok", None, 1.5, 7, {"version": "x"}),)
    assert view.endpoints == (Endpoint("t", "h0", "ok", None, 0.5, 3),)
    assert view.kinds == {"kvm"} and [len(g.hosts) for g in view.host_groups] == [3]
    assert view.hosts is view.hosts  # each table is read once per view


def test_a_finding_is_made_from_what_it_is_about() -> None:
    from inventory.model import Cluster, Host, HostNic, Network, Storage, Vm
    from inventory.rulebook import RULES, Subject
    from inventory.view import HostGroup, Target
    r = RULES["host-state"]
    host = Host(key="h1", target="t", cluster_key="c1", name="h1", address="a", hypervisor="kvm")
    about = {
        host: ("host", "h1", "t", "c1"),
        Vm(key="v1", target="t", host_key="h1", cluster_key=None, name="v"): ("vm", "v1", "t", None),
        Cluster(key="c1", target="t", name="C", hypervisor="kvm"): ("cluster", "c1", "t", "c1"),
        HostGroup("kvm", "t", "t", (host,)): ("cluster", "t", "t", "t"),
        Storage(key="s1", target="t", name="nfs", kind="nfs"): ("storage", "s1", "t", None),
        Network(key="n1", target="t", name="cloudbr0", kind="bridge"): ("network", "n1", "t", None),
        Target("t", "kvm", "e", "ok"): ("target", "t", "t", None),
        HostNic(host_key="h9", target="t", device="eth0"): ("host", "h9", "t", None),
        Subject("vm", "uuid-1", "t"): ("vm", "uuid-1", "t", None),
    }
    for record, (object_type, key, target, cluster) in about.items():
        f = r.finding(record, "m", observed=3)
        assert (f.object_type, f.object_key, f.target, f.cluster) == (object_type, key, target, cluster), record
        assert (f.rule_id, f.severity, f.observed, f.expected, f.remediation, f.basis) == (
            r.id, "info", "3", None, r.remediation, "INF")
    overridden = r.finding(host, "m", cluster="group")
    assert (overridden.severity, overridden.cluster) == ("info", "group")


# -- findings about many objects --------------------------------------------------------------------
def test_the_same_statement_about_many_objects_of_a_cluster_is_one_finding(tmp_path: Path) -> None:
    """From GROUP_AT hosts (or VMs) of one cluster, one statement is one finding: about the cluster, with the count
    and the first names, each object's own finding kept in it; fewer, other words, or a message that does not
    begin with the object's name stand alone, where they stood. Stored, nothing of any object is lost."""
    from inventory.checks import GROUP_AT, group_findings, store_findings
    from inventory.model import Host, Vm
    from inventory.rulebook import RULES
    assert GROUP_AT == 3
    disk, version = RULES["host-local-disk"], RULES["vmware-version-supported"]
    hosts = [Host(key=f"h{i}", target="vc", cluster_key="c1" if i < 7 else "c2", name=f"esx{i}", address="a",
                  hypervisor="vmware") for i in range(9)]
    small = [disk.finding(h, f"{h.name} has 34.4 GB of local disk", observed=34359738368, expected="≥ 36 GB")
             for h in hosts]
    old = [version.finding(h, f"{h.name}: ESXi 6.5.0 is no longer supported", observed="6.5.0") for h in hosts[:3]]
    odd = disk.finding(hosts[0], "the local disk of esx0 is small")
    vms = [Vm(key=f"v{i}", target="kvm", host_key="h", cluster_key=None, name=f"vm{i}") for i in range(4)]
    strangers = [RULES["unmanaged-vms"].finding(v, f"{v.name} is running and is not a CloudStack instance",
                                                observed=v.name) for v in vms]
    findings = [*small[:3], odd, *small[3:], *old, *strangers]
    grouped = group_findings(findings)
    assert [(f.object_type, f.object_key, f.object_count) for f in grouped] == [
        ("cluster", "c1", 7), ("host", "h0", 1), ("host", "h7", 1), ("host", "h8", 1), ("cluster", "c1", 3),
        ("target", "kvm", 4)]
    disks, alone, _, _, versions, vm_group = grouped
    assert disks.message == "7 hosts (esx0, esx1, esx2, esx3, esx4 and 2 more): each has 34.4 GB of local disk"
    assert (disks.observed, disks.expected, disks.cluster, disks.rule_id) == ("34359738368", "≥ 36 GB", "c1",
                                                                              "host-local-disk")
    assert disks.objects == tuple(small[:7]) and alone is odd
    assert versions.message == "3 hosts (esx0, esx1, esx2): ESXi 6.5.0 is no longer supported"
    assert vm_group.message == "4 VMs (vm0, vm1, vm2, vm3): each is running and is not a CloudStack instance"
    assert (vm_group.cluster, vm_group.observed) == (None, None)  # each VM's name is its own observation
    store = open_store(tmp_path / "grouped.db")
    scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), [])
    store_findings(store, scan_id, findings)
    rows = store.query("SELECT number, object_type, object_key, object_count, message FROM findings ORDER BY rowid")
    assert [(r["number"], r["object_count"]) for r in rows] == [(1, 7), (2, 1), (3, 1), (4, 1), (5, 3), (6, 4)]
    per_object = [{k: v for k, v in f.items() if k != "scan_id"} for f in store.finding_objects(scan_id)]
    assert per_object == [f.as_row() for f in [*small[:7], odd, *small[7:], *old, *strangers]]


def test_the_checks_read_a_scan_in_memory_as_they_would_read_it_back(tmp_path: Path) -> None:
    """`scan` hands its results to the checks rather than reading them back: every recorded case, every kind,
    gives the same findings both ways (a raw_json with unsorted keys or tuples is read as the store writes it)."""
    from fixtures.cases import case_folders, load_case, replay
    results = [replay(load_case(folder)) for folder in case_folders()]
    results.append(toy_pool())
    messy = toy_pool()
    messy.name = "messy"
    for table in ("hosts", "vms", "vm_disks", "vm_nics", "storage", "host_storage"):
        setattr(messy.inventory, table, [dataclasses.replace(r, target="messy") for r in getattr(messy.inventory, table)])
    messy.inventory.hosts = [dataclasses.replace(h, raw_json={"z": (1, 2), "a": {"y": 1, "b": [()]}})
                             for h in messy.inventory.hosts]
    results.append(messy)
    store = open_store(tmp_path / "memory.db")
    scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), results)
    from inventory.view import InventoryView
    read, given = (InventoryView(store, scan_id, resolve("4.20"), scanned=s) for s in (None, results))
    for table in ("targets", "endpoints", *schema.INVENTORY_TABLES):
        assert repr(getattr(given, table)) == repr(getattr(read, table)), table  # repr: dict key order and list/tuple
    from_memory = run_checks(store, scan_id, "4.20", scanned=results)
    stored = store.finding_objects(scan_id)
    assert run_checks(store, scan_id, "4.20") == from_memory and store.finding_objects(scan_id) == stored
    assert len(from_memory) > 100


def test_a_scan_checked_as_it_is_stored_stores_what_check_would(tmp_path: Path) -> None:
    """`scan` checks the results in memory as it stores them: the same findings as checking the stored scan
    afterwards (a XAPI pool of 60 VMs with a stranger among them, through the fixture server)."""
    from inventory import CheckSettings, load_config, scan
    def one_running_stranger(root: ET.Element) -> None:
        vm = next(v for v in rows_of(root, "VM") if v.get("name__label") == "i-5-1003-VM")
        vm.set("name__label", "backup-server")
    os.environ["CSI_CHECK_PW"] = "xenroot"
    server = serve_dump(edited_pool(tmp_path, one_running_stranger, vms=60))
    try:
        config = tmp_path / "scan.toml"
        config.write_text(f'[database]\npath = "{tmp_path / "scan.db"}"\n[[xenserver]]\nname = "pool"\n'
                          f'url = "{server.url}"\npassword_env = "CSI_CHECK_PW"\n')
        result = scan(load_config(config), checks=CheckSettings("4.20", settings={"control.cidr": "169.254.0.0/16"}))
    finally:
        server.stop()
    assert result.status == "ok" and result.checked_against == "4.20" and result.findings
    import gc
    assert gc.get_freeze_count() == 0  # a library's scan pauses the collector in its bulk phases, freezes nothing
    with open_store(tmp_path / "scan.db") as store:
        stored = store.finding_objects(result.scan_id)
        rows = list(store.rows("findings", result.scan_id))
        again = run_checks(store, result.scan_id, "4.20", settings={"control.cidr": "169.254.0.0/16"})
        assert again == result.findings
        assert store.finding_objects(result.scan_id) == stored and list(store.rows("findings", result.scan_id)) == rows
    assert "unmanaged-vms" in {f.rule_id for f in result.findings}


# -- rules for every kind ---------------------------------------------------------------------------
GENERIC = {"cluster-same-cpu", "duplicate-mac", "duplicate-uuid", "shared-storage-on-every-host", "storage-capacity",
           "unmanaged-vms", "host-state", "data-volumes-per-vm", "traffic-labels-on-every-host", "guests-per-host",
           "storage-allocated-capacity", "host-memory", "cluster-same-arch", "host-local-disk"}


def toy_pool() -> TargetResult:
    """A hypervisor kind none of the rules names: two hosts with different CPUs in one cluster, one MAC on two VMs,
    a shared storage attached on one host only."""
    from inventory.model import Host, HostStorage, Inventory, Storage, Vm, VmDisk, VmNic
    inv = Inventory()
    for i, model in enumerate(("Toy Lake", "Toy Bridge")):
        inv.hosts.append(Host(key=f"h{i}", target="toys", cluster_key="c1", name=f"toy{i}", address=f"10.0.0.{i}",
                              hypervisor="toy", cpu_vendor="ToyCo", cpu_model=model, memory_bytes=2**30,
                              state="connected", hvm=False))
        inv.vms.append(Vm(key=f"v{i}", target="toys", host_key=f"h{i}", cluster_key="c1", name=f"i-2-{i}-VM",
                          uuid=f"u{i}", cs_role="user", power_state="running"))
        inv.vm_nics.append(VmNic(vm_key=f"v{i}", target="toys", device="0", mac="06:00:00:00:00:99"))
    inv.vm_disks += [VmDisk(vm_key="v0", target="toys", device=f"d{d}", disk_type="disk") for d in range(8)]
    inv.storage.append(Storage(key="s1", target="toys", name="toy-nfs", kind="nfs", shared=True))
    inv.host_storage.append(HostStorage(host_key="h0", target="toys", storage_key="s1", attached=True))
    return TargetResult(name="toys", hypervisor="toy", endpoint="toy", status="ok", inventory=inv)


def test_a_kind_no_rule_names_gets_the_generic_rules(tmp_path: Path) -> None:
    from inventory import registry
    assert "toy" not in registry.kinds()  # nothing registers it: the scan alone says what kinds there are
    findings = by_rule(check(tmp_path, [toy_pool()], "4.22"))
    (odd_cpu,) = findings["cluster-same-cpu"]
    assert (odd_cpu.object_key, odd_cpu.cluster, odd_cpu.observed, odd_cpu.expected) == ("h1", "c1", "Toy Bridge",
                                                                                       "Toy Lake")
    (mac,) = findings["duplicate-mac"]
    assert (mac.object_key, mac.observed) == ("u0", "u0, u1")
    (missing,) = findings["shared-storage-on-every-host"]
    assert (missing.object_key, missing.observed, missing.message) == ("s1", "missing", "toy-nfs is missing on toy1")
    (volumes,) = findings["data-volumes-per-vm"]  # no hypervisor_capabilities row for it: the default limits
    assert (volumes.object_key, volumes.observed, volumes.expected) == ("v0", "7", "≤ 6")
    assert findings["host-memory"][0].observed == str(2**30)  # _requirements.rst asks every host for 4 GB
    assert set(findings) <= GENERIC  # hvm False: the virtualisation rules name their kinds


def test_generic_rules_are_for_every_registered_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from inventory import docs, registry
    assert "cloudstack_api" in registry.kinds() and "cloudstack_api" not in registry.hypervisor_kinds()
    assert not select_rules(["host-state"])[0].runs_on({"cloudstack_api"})  # CloudStack's API is no hypervisor
    monkeypatch.setattr(registry, "hypervisor_kinds", lambda: ("kvm", "xenserver", "vmware", "toy"))
    catalogue = {r.id: r for r in select_rules()}
    assert {r.id for r in catalogue.values() if r.is_for_any_kind} == GENERIC
    assert catalogue["host-state"].hypervisors == {"kvm", "xenserver", "vmware", "toy"}
    assert catalogue["host-state"].hypervisors_shown == "any"
    assert catalogue["cluster-size"].hypervisors == {"kvm", "xenserver", "vmware"}
    assert catalogue["cluster-size"].hypervisors_shown == "kvm, vmware, xenserver"
    assert catalogue["xen-pool-ha"].runs_on({"xenserver"}) and not catalogue["xen-pool-ha"].runs_on({"toy"})
    assert catalogue["host-state"].runs_on({"toy"}) and not catalogue["host-state"].runs_on(set())
    assert "| `host-state` | INF | info | any |" in docs.rules_table()


def test_the_rules_command_shows_any_kind() -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app
    result = CliRunner().invoke(app, ["rules", "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = {r["id"]: r for r in json.loads(result.output)}
    assert listed["duplicate-mac"]["any_kind"] is True and not listed["xen-pool-ha"]["any_kind"]
    assert {"kvm", "xenserver", "vmware"} <= set(listed["duplicate-mac"]["hypervisors"])
    assert listed["xen-pool-ha"]["hypervisors"] == ["xenserver"]
