"""Reconciliation against the real servers: the real libvirtd (QEMU driver) read over qemu+ssh:// through a real
sshd with SSH facts, and govmomi's vCenter simulator with VMs renamed to CloudStack instance names and marked with
CloudStack's custom attributes through the vSphere API. Each is read, mirrored into a CloudStack view (the clean
control: no difference at all), then each difference is planted once; the faithful CloudStack API server serves
the view, a scan reads both sides and ``reconcile`` must find exactly what was planted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.cloudstack_api import CloudStackApiTarget
from collectors.kvm import KvmCollector, KvmTarget
from collectors.vmware import VmwareCollector, VmwareTarget
from fixtures.cloudstack.scenarios import (
    ADMIN_KEY, ADMIN_SECRET, DIFFERENCES, ScenarioTooSmall, mirror, plant,
)
from fixtures.cloudstack.server import ApiKey, Scenario, serve
from fixtures.libvirtd import LabDomain, define_domains, remove_domains
from fixtures.sshd import SshServer
from fixtures.vcsim import Vcsim, add_disk, mark_as_cloudstack_does, power_off, rename_vms, start_vcsim, vsphere
from fixtures.xapi.tls import self_signed
from inventory import open_store_readonly, reconcile, scan
from inventory.config import Config
from inventory.model import Inventory, Secret, TargetConfig
from tests.conftest import REAL_DOMAINS

pytestmark = pytest.mark.heavy
# One more running CloudStack VM than the shared REAL_DOMAINS have (a leftover, a VM Stopped in CloudStack and one
# CloudStack places on another host are three running VMs), in a second pool (a volume CloudStack records on
# another pool than its disk's needs two).
EXTRA_DOMAINS = [LabDomain("i-902-1-VM", running=True, memory_mib=64, disks_mib=[8])]
EXTRA_POOL = "cs-inventory-test-2"
OURS = {d.name for d in REAL_DOMAINS + EXTRA_DOMAINS}
# Leftovers of a difference show once per object but may also be seen by another rule (the leftover's disks
# leak on the pool; a pool is missing on every host of the cluster): those are checked for their object only.
SHARED = {"reconcile-vm-unknown-to-cloudstack", "reconcile-storage-leak", "reconcile-pool-not-attached"}
USER, PASSWORD = "administrator@vsphere.local", "vc-Secret-2"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_REAL_SECRET", ADMIN_SECRET)
    monkeypatch.setenv("CS_REAL_VC_PASSWORD", PASSWORD)


def cloudstack_target(url: str) -> CloudStackApiTarget:
    return CloudStackApiTarget(name="mgmt1", url=url, api_key=ADMIN_KEY, secret_key=Secret("env", "CS_REAL_SECRET"),
                               page_size=3)  # lists of more than three items page


def reconciled(hypervisor: TargetConfig, scenario: dict[str, Any], db: Path) -> Any:
    """Scan the hypervisor target and the CloudStack view served from ``scenario``; the reconciliation."""
    running = serve(Scenario.from_json(scenario), [ApiKey(ADMIN_KEY, ADMIN_SECRET)])
    try:
        result = scan(Config(path=None, database_path=db, targets=(hypervisor, cloudstack_target(running.url))),
                      db_path=db)
    finally:
        running.stop()
    assert [t.status for t in result.targets] == ["ok", "ok"], [t.error for t in result.targets]
    with open_store_readonly(db) as store:
        return reconcile(store, result.scan_id)


def found_by_rule(differences: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for difference in differences:
        found.setdefault(difference["difference"], []).append(difference["object_key"])
    return found


def check_each_once(result: Any, planted: dict[str, str]) -> None:
    found = found_by_rule(result.differences)
    assert set(found) == set(planted), found
    for rule_id, key in planted.items():
        assert key in found[rule_id], (rule_id, found[rule_id])
        if rule_id not in SHARED:
            assert found[rule_id] == [key], (rule_id, found[rule_id])  # once, and nothing else shows it
    for difference in result.differences:
        assert difference["hypervisor_side"] is not None and difference["cloudstack_side"] is not None, difference
        assert difference["zone_cluster"].startswith("zone1 / "), difference
    assert result.exit_code == 1 and result.not_compared == []


# -- the real libvirtd over qemu+ssh ----------------------------------------------------------------
@pytest.fixture(scope="module")
def real_kvm(real_domains: Any, sshd: SshServer) -> Iterator[tuple[KvmTarget, Inventory]]:
    define_domains(EXTRA_DOMAINS, EXTRA_POOL, Path("/var/lib/libvirt/images") / EXTRA_POOL)
    target = KvmTarget(name="real-kvm", hosts=("127.0.0.1",), cluster="real-cluster", ssh_port=sshd.port,
                       ssh_key=sshd.client_key, known_hosts=sshd.known_hosts, connect_timeout=3.0, host_timeout=20.0)
    try:
        result = KvmCollector(target).collect()
        assert result.status == "ok", result.error
        assert OURS <= {v.name for v in result.inventory.vms}
        yield target, result.inventory
    finally:
        remove_domains([d.name for d in EXTRA_DOMAINS], EXTRA_POOL)
        remove_pool(EXTRA_POOL)


def remove_pool(name: str) -> None:
    import libvirt
    conn = libvirt.open("qemu:///system")
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


def test_the_real_libvirtd_mirrored_has_no_difference(real_kvm: Any, tmp_path: Path) -> None:
    target, inventory = real_kvm
    result = reconciled(target, mirror(inventory, seed="real"), tmp_path / "clean.db")
    assert result.differences == [] and result.not_compared == [] and result.exit_code == 0


def test_the_real_libvirtd_with_each_difference_planted_once(real_kvm: Any, tmp_path: Path) -> None:
    target, inventory = real_kvm
    # One machine is one libvirtd, so one host: CloudStack cannot list a cluster and miss one of its hosts (that
    # difference is planted against the vCenter simulator below and the test-driver cluster in test_cloudstack_api).
    with pytest.raises(ScenarioTooSmall, match="two scanned hosts"):
        plant(mirror(inventory, seed="real"), inventory, among=lambda vm: vm.name in OURS)
    differences = [d for d in DIFFERENCES if d != "reconcile-host-unknown-to-cloudstack"]
    scenario, planted = plant(mirror(inventory, seed="real"), inventory, differences=differences,
                              among=lambda vm: vm.name in OURS)
    assert set(planted) == set(differences)
    result = reconciled(target, scenario, tmp_path / "planted.db")
    check_each_once(result, planted)
    by_rule = {d["difference"]: d for d in result.differences if d["object_key"] == planted.get(d["difference"])}
    leftover = by_rule["reconcile-vm-unknown-to-cloudstack"]
    names = {v.key: v.name for v in inventory.vms}  # libvirt lists domains in no fixed order: which one was taken
    assert leftover["severity"] == "error" and names[leftover["object_key"]].startswith("i-9")
    assert f"{names[leftover['object_key']]} (running)" in leftover["message"]
    assert any(d["severity"] == "warning" and "unmanaged-901" in d["message"] for d in result.differences)
    assert by_rule["reconcile-vm-not-running"]["hypervisor_side"].startswith("stopped on ")
    assert by_rule["reconcile-cluster-drift"]["cloudstack_side"] != by_rule["reconcile-cluster-drift"]["hypervisor_side"]


def test_a_volume_of_a_real_pool_that_nothing_uses_is_a_leak(real_kvm: Any, tmp_path: Path) -> None:
    """libvirt lists a pool's volumes to a read-only connection (as it last refreshed the pool): a volume made
    beside the VMs' disks after CloudStack's view was mirrored is the one difference."""
    import libvirt
    target, inventory = real_kvm
    scenario = mirror(inventory, seed="real")
    conn = libvirt.open("qemu:///system")
    pool = conn.storagePoolLookupByName(EXTRA_POOL)
    volume = pool.createXML("<volume><name>forgotten-3.qcow2</name><capacity unit='MiB'>16</capacity>"
                            "<target><format type='qcow2'/></target></volume>", 0)
    try:
        result = reconciled(target, scenario, tmp_path / "leak.db")
    finally:
        volume.delete(0)
        conn.close()
    assert [d["difference"] for d in result.differences] == ["reconcile-storage-leak"], result.differences
    assert result.differences[0]["hypervisor_side"].endswith(f"/{EXTRA_POOL}/forgotten-3.qcow2")


# -- govmomi's vCenter simulator -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def vcenter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VmwareTarget, Inventory]]:
    """Eight VMs on a three-host cluster with two datastores, made into CloudStack's: VMs renamed to instance names
    (a router among them), one under its display name with ``cloud.vm.internal.name``, a worker VM, one left
    foreign, one stopped, and one with a disk of its own file on the second datastore (the simulator names every
    first disk ``disk1.vmdk``)."""
    tls = self_signed(tmp_path_factory.mktemp("vctls"), name="vcenter")
    sim: Vcsim = start_vcsim(clusters=1, cluster_hosts=3, standalone_hosts=0, vms=8, datastores=2, username=USER,
                             password=PASSWORD, tls=tls)
    try:
        with vsphere(sim, user=USER, password=PASSWORD, ca_file=tls[0]) as content:
            rename_vms(content, {f"DC0_C0_RP0_VM{i}": f"i-2-{i + 1}-VM" for i in range(4)} |
                       {"DC0_C0_RP0_VM4": "r-5-VM", "DC0_C0_RP0_VM5": "web-frontend"})
            mark_as_cloudstack_does(content, {
                "web-frontend": {"cloud.vm.internal.name": "i-2-6-VM", "cloud.uuid": "5c0e6f1e"},
                "DC0_C0_RP0_VM6": {"cloud.vm.worker": "true", "cloud.vm.worker.tag": "1700000000000-mgmt1"}})
            power_off(content, ["i-2-2-VM"])
            add_disk(content, "i-2-4-VM", "[LocalDS_1] ROOT-4.vmdk")
        target = VmwareTarget(name="vcsim", host=sim.host, port=sim.port, username=USER,
                              password=Secret("env", "CS_REAL_VC_PASSWORD"), ca_file=tls[0], datastore_files=True)
        os.environ["CS_REAL_VC_PASSWORD"] = PASSWORD
        result = VmwareCollector(target).collect()
        assert result.status == "ok", result.error
        roles = {v.name: (v.instance_name, v.cs_role) for v in result.inventory.vms}
        assert roles["web-frontend"] == ("i-2-6-VM", "user") and roles["DC0_C0_RP0_VM6"][1] == "worker"
        assert roles["r-5-VM"] == ("r-5-VM", "router") and roles["DC0_C0_RP0_VM7"] == (None, "unmanaged")
        yield target, result.inventory
    finally:
        sim.stop()


def test_the_vcenter_simulator_mirrored_has_no_difference(vcenter: Any, tmp_path: Path) -> None:
    target, inventory = vcenter
    scenario = mirror(inventory, seed="vcsim")
    assert "DC0_C0_RP0_VM6" not in {v["displayname"] for v in scenario["vms"]}  # CloudStack lists no worker VM
    assert {v["instancename"] for v in scenario["vms"] if v["displayname"] == "web-frontend"} == {"i-2-6-VM"}
    result = reconciled(target, scenario, tmp_path / "clean.db")
    # the worker VM, which CloudStack does not list, is no difference: it is CloudStack's helper
    assert result.differences == [] and result.not_compared == [] and result.exit_code == 0


def test_the_vcenter_simulator_with_each_difference_planted_once(vcenter: Any, tmp_path: Path) -> None:
    target, inventory = vcenter
    scenario, planted = plant(mirror(inventory, seed="vcsim"), inventory, seed="vcsim")
    assert set(planted) == set(DIFFERENCES)
    result = reconciled(target, scenario, tmp_path / "planted.db")
    check_each_once(result, planted)
    messages = " | ".join(d["message"] for d in result.differences)
    assert "DC0_C0_RP0_VM6" not in messages  # the worker VM is never a difference
    keys = {v.name: v.key for v in inventory.vms}
    assert planted["reconcile-vm-unknown-to-cloudstack"] == keys["i-2-1-VM"]
    assert any(d["object_key"] == keys["DC0_C0_RP0_VM7"] and d["severity"] == "warning" for d in result.differences)
    volume = next(d for d in result.differences if d["difference"] == "reconcile-volume-missing")
    assert "of i-2-6-VM is not among its disks on" in volume["message"]  # web-frontend, by its attribute
    leak = next(d for d in result.differences if d["difference"] == "reconcile-storage-leak"
                and "ROOT-4" in d["message"])
    assert leak["hypervisor_side"] == "[LocalDS_1] ROOT-4.vmdk"


def test_a_disk_file_on_a_datastore_that_nothing_uses_is_a_leak(vcenter: Any, tmp_path: Path) -> None:
    """govmomi's simulator serves a datastore's folder as its files and answers the datastore browser's search: a
    VM's disk is in use, its extent and a snapshot's delta are no disks of their own, and a VMDK left in a folder
    of its own (a VM expunged from CloudStack but not from vSphere) is the one difference."""
    target, inventory = vcenter
    scenario = mirror(inventory, seed="vcsim")
    in_use = next(d.path for d in inventory.vm_disks if d.path and d.path.startswith("[LocalDS_0] "))
    folder = Path(next(s.source for s in inventory.storage if s.name == "LocalDS_0") or "")
    planted = [in_use.split("] ", 1)[1], "i-2-9-VM/ROOT-9.vmdk", "i-2-9-VM/ROOT-9-flat.vmdk",
               in_use.split("] ", 1)[1].replace(".vmdk", "-000001.vmdk")]
    for name in planted:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"# Disk DescriptorFile\n")
    try:
        result = reconciled(target, scenario, tmp_path / "leak.db")
    finally:
        for name in planted:
            (folder / name).unlink()
    assert [d["difference"] for d in result.differences] == ["reconcile-storage-leak"], result.differences
    assert result.differences[0]["hypervisor_side"] == "[LocalDS_0] i-2-9-VM/ROOT-9.vmdk"
