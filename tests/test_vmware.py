"""The VMware collector against govmomi's vCenter simulator over HTTPS, compared with what a plain
pyvmomi walk returns; scenarios made through the vSphere API itself; the failure cases."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from collectors.vmware import VmwareCollector, VmwareTarget
from fixtures.vcsim import Vcsim, mark_as_cloudstack_does, rename_vms, start_vcsim, vsphere
from fixtures.xapi.tls import self_signed, sha256_fingerprint
from inventory.model import Secret

pytestmark = pytest.mark.heavy
USER, PASSWORD = "readonly@vsphere.local", "vc-Secret-1"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("vctls"), name="vcenter")


@pytest.fixture
def vcenter(tls: tuple[Path, Path]) -> Iterator[Vcsim]:
    sim = start_vcsim(clusters=2, cluster_hosts=3, standalone_hosts=1, vms=3, username=USER, password=PASSWORD,
                      tls=tls)
    yield sim
    sim.stop()


def target(sim: Vcsim, tls: tuple[Path, Path], **extra: Any) -> VmwareTarget:
    value = extra.pop("password_value", PASSWORD)
    variable = f"CSI_VC_PASSWORD_{abs(hash(value))}"
    os.environ[variable] = value
    settings: dict[str, Any] = dict(name="vc", host=sim.host, port=sim.port, username=USER,
                                    password=Secret("env", variable), ca_file=tls[0])
    settings.update(extra)
    return VmwareTarget(**settings)


def walk(sim: Vcsim, tls: tuple[Path, Path]) -> dict[str, Any]:
    """The common script pattern: every object, property by property. Slow, but independent of us."""
    import ssl
    si = SmartConnect(host=sim.host, port=sim.port, user=USER, pwd=PASSWORD,
                      sslContext=ssl.create_default_context(cafile=str(tls[0])))
    content = si.RetrieveContent()

    def objects(kind: Any) -> list[Any]:
        return list(content.viewManager.CreateContainerView(content.rootFolder, [kind], True).view)
    seen: dict[str, Any] = {
        "vms": {vm.config.instanceUuid: (vm.name, vm.runtime.host._moId, vm.config.hardware.numCPU,
                                         vm.config.hardware.memoryMB * 2**20, str(vm.runtime.powerState),
                                         sorted(d.macAddress for d in vm.config.hardware.device
                                                if isinstance(d, vim.vm.device.VirtualEthernetCard)),
                                         sorted(d.backing.fileName for d in vm.config.hardware.device
                                                if isinstance(d, vim.vm.device.VirtualDisk)))
                for vm in objects(vim.VirtualMachine)},
        "hosts": {h._moId: (h.name, h.parent._moId, h.summary.hardware.memorySize, h.config.product.version,
                            h.runtime.inMaintenanceMode) for h in objects(vim.HostSystem)},
        "clusters": {c._moId: (c.name, sorted(h._moId for h in c.host), bool(c.configurationEx.drsConfig.enabled),
                               c.configurationEx.dasConfig.enabled) for c in objects(vim.ClusterComputeResource)},
        "datastores": {d._moId: (d.name, sorted(m.key._moId for m in d.host)) for d in objects(vim.Datastore)},
        "networks": {n._moId: n.name for n in objects(vim.Network)},
    }
    Disconnect(si)
    return seen


def test_everything_the_simulator_reports_is_stored_with_its_relations(vcenter: Vcsim, tls: Any) -> None:
    result = VmwareCollector(target(vcenter, tls)).collect()
    assert result.status == "ok", result.error
    inv = result.inventory
    seen = walk(vcenter, tls)
    vms = {v.key: v for v in inv.vms}
    assert set(vms) == set(seen["vms"])
    state = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}
    for key, (name, host, vcpus, memory, power, macs, files) in seen["vms"].items():
        vm = vms[key]
        assert (vm.name, vm.host_key, vm.vcpus, vm.memory_bytes, vm.power_state) == (name, host, vcpus, memory,
                                                                                     state[power])
        assert sorted(n.mac or "" for n in inv.vm_nics if n.vm_key == key) == sorted(m.lower() for m in macs)
        assert sorted(d.path or "" for d in inv.vm_disks if d.vm_key == key) == sorted(files)
        assert all(d.storage_key in {s.key for s in inv.storage} for d in inv.vm_disks if d.vm_key == key)
    hosts = {h.key: h for h in inv.hosts}
    assert set(hosts) == set(seen["hosts"])
    for key, (name, parent, memory, version, _maintenance) in seen["hosts"].items():
        host = hosts[key]
        assert (host.name, host.memory_bytes, host.hypervisor_version) == (name, memory, version)
        assert host.cluster_key == (parent if parent in seen["clusters"] else None)
    clusters = {c.key: c for c in inv.clusters}
    assert set(clusters) == set(seen["clusters"])
    for key, (name, members, drs, _ha) in seen["clusters"].items():
        assert (clusters[key].name, clusters[key].host_count, clusters[key].drs_enabled) == (name, len(members), drs)
        assert sorted(h.key for h in inv.hosts if h.cluster_key == key) == members
    assert {s.key for s in inv.storage} == set(seen["datastores"])
    for key, (_, mounted) in seen["datastores"].items():
        assert sorted(a.host_key for a in inv.host_storage if a.storage_key == key) == mounted
    assert {n.key for n in inv.networks if n.kind in ("portgroup", "dvportgroup")} == set(seen["networks"])
    assert all(n.network_key in {x.key for x in inv.networks} for n in inv.vm_nics)
    vmk = [n for n in inv.host_nics if n.kind == "vmk"]
    assert len(vmk) == len(hosts) and all(n.ip for n in vmk)
    # about one call per object type (plus login, content, views): it does not grow with the inventory
    assert result.api_calls < 40


def test_scenarios_made_through_the_vsphere_api(tls: Any) -> None:
    # govmomi 0.24's simulator ignores drsConfig/dasConfig in ReconfigureComputeResource_Task, so DRS off and
    # HA on are set when the simulator starts (-drs-off/-ha-on); the rest is done through the vSphere API.
    sim = start_vcsim(clusters=2, cluster_hosts=3, vms=1, username=USER, password=PASSWORD, tls=tls,
                      drs_off="DC0_C0", ha_on="DC0_C0")
    try:
        import ssl
        si = SmartConnect(host=sim.host, port=sim.port, user=USER, pwd=PASSWORD,
                          sslContext=ssl.create_default_context(cafile=str(tls[0])))
        content = si.RetrieveContent()
        clusters = content.viewManager.CreateContainerView(content.rootFolder, [vim.ClusterComputeResource], True).view
        cluster = next(c for c in clusters if c.name == "DC0_C0")
        # (the simulator does not reflect AddPortGroup in host.config.network, so the port group is a dvPortgroup)
        dvs = content.viewManager.CreateContainerView(content.rootFolder, [vim.DistributedVirtualSwitch], True).view[0]
        vlan = vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec(vlanId=200, inherited=False)
        WaitForTask(dvs.AddDVPortgroup_Task([vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            name="cloud.guest.200", type="earlyBinding", numPorts=16,
            defaultPortConfig=vim.dvs.VmwareDistributedVirtualSwitch.VmwarePortConfigPolicy(vlan=vlan))]))
        WaitForTask(cluster.host[1].EnterMaintenanceMode_Task(timeout=0))
        cluster_key, parked = cluster._moId, cluster.host[1]._moId
        Disconnect(si)
        inv = VmwareCollector(target(sim, tls)).collect().inventory
    finally:
        sim.stop()
    states = {c.name: (c.drs_enabled, c.ha_enabled) for c in inv.clusters}
    assert states["DC0_C0"] == (False, True) and states["DC0_C1"][0] is True
    assert next(c for c in inv.clusters if c.key == cluster_key).host_count == 3
    added = [n for n in inv.networks if n.name == "cloud.guest.200"]
    assert [(n.kind, n.vlan, n.bridge) for n in added] == [("dvportgroup", 200, "DVS0")]
    assert next(h for h in inv.hosts if h.key == parked).state == "maintenance"
    assert {h.state for h in inv.hosts if h.key != parked} == {"connected"}


def test_an_esxi_host_is_refused(tls: Any) -> None:
    esx = start_vcsim(esx=True, username=USER, password=PASSWORD, tls=tls)
    try:
        result = VmwareCollector(target(esx, tls)).collect()
    finally:
        esx.stop()
    assert result.status == "failed" and "is an ESXi host" in (result.error or "")
    assert "through vCenter" in (result.error or "")


def test_failures_are_one_line_reasons_within_the_timeout(vcenter: Vcsim, tls: Any) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    cases = {
        "bad password": target(vcenter, tls, password_value="wrong"),
        "untrusted": target(vcenter, tls, ca_file=None),
        "wrong pin": target(vcenter, tls, ca_file=None, fingerprint="00" * 32),
        "silent": target(vcenter, tls, port=silent.getsockname()[1], connect_timeout=2.0, timeout=2.0),
    }
    reasons = {}
    for case, settings in cases.items():
        started = time.monotonic()
        result = VmwareCollector(settings).collect()
        assert result.status == "failed" and time.monotonic() - started < 10, case
        assert result.error and "\n" not in result.error
        assert "wrong" not in result.error and PASSWORD not in result.error
        reasons[case] = result.error
    silent.close()
    assert "InvalidLogin" in reasons["bad password"]
    assert "certificate not trusted" in reasons["untrusted"]
    assert "fingerprint" in reasons["wrong pin"]
    assert "could not connect within 2s" in reasons["silent"]  # a listener that never shakes hands
    pinned = VmwareCollector(target(vcenter, tls, ca_file=None, fingerprint=sha256_fingerprint(tls[0]))).collect()
    assert pinned.status == "ok"


def mark(sim: Vcsim, tls: tuple[Path, Path], marks: dict[str, dict[str, str]],
         renames: dict[str, str] | None = None) -> None:
    """VMs renamed, then CloudStack's custom attributes set through the vSphere API (fixtures/vcsim)."""
    with vsphere(sim, user=USER, password=PASSWORD, ca_file=tls[0]) as content:
        rename_vms(content, renames or {})
        mark_as_cloudstack_does(content, marks)


def test_cloudstacks_custom_attributes_are_read_from_vcenter(vcenter: Vcsim, tls: Any) -> None:
    mark(vcenter, tls, {
        "web-frontend": {"cloud.vm.internal.name": "i-2-7-VM", "cloud.uuid": "6b1e4c2a"},
        "DC0_C0_RP0_VM1": {"cloud.vm.worker": "true", "cloud.vm.worker.tag": "1700000000000-mgmt1"},
        "i-2-9-VM": {"cloud.vm.internal.name": "i-2-99-VM"}}, renames={"DC0_C0_RP0_VM0": "web-frontend",
                                                                       "DC0_C1_RP0_VM0": "i-2-9-VM"})
    mark(vcenter, tls, {"i-2-9-VM": {"cloud.vm.internal.name": "i-2-9-VM"}})  # set again
    result = VmwareCollector(target(vcenter, tls)).collect()
    assert result.status == "ok" and result.detail and not result.detail["read_by"], result.error  # the fast path
    vms = {v.name: v for v in result.inventory.vms}
    web, worker, again = vms["web-frontend"], vms["DC0_C0_RP0_VM1"], vms["i-2-9-VM"]
    assert (web.instance_name, web.cs_role, web.cs_id) == ("i-2-7-VM", "user", 7)
    assert web.raw_json == {"moid": web.raw_json["moid"] if web.raw_json else None,
                            "cloud.vm.internal.name": "i-2-7-VM", "cloud.uuid": "6b1e4c2a"}
    assert worker.cs_role == "worker" and (worker.raw_json or {})["cloud.vm.worker"] == "true"
    assert (again.instance_name, again.cs_id) == ("i-2-9-VM", 9)  # the value set last, as vCenter keeps one
    assert {v.cs_role for n, v in vms.items() if n not in ("web-frontend", "DC0_C0_RP0_VM1", "i-2-9-VM")} == \
        {"unmanaged"}


def test_the_fast_parser_gives_records_identical_to_pyvmomis(vcenter: Vcsim, tls: Any, tmp_path: Path) -> None:
    """The bulk VM and host properties read by our patterns (pages of named objects, two asked for at once) and by
    pyvmomi's deserialiser (one traversal): the same answers as the normaliser reads them, the same records, and —
    stored and checked — the same findings, grouped alike and each object's own finding kept."""
    import dataclasses

    from inventory import open_store, run_checks
    from inventory.store import ScanRow
    mark(vcenter, tls, {"DC0_C0_RP0_VM0": {"cloud.vm.internal.name": "i-2-7-VM & <co>"},
                        "DC0_H0_VM0": {"cloud.vm.worker": "true", "owner": ""}})
    fast_read = VmwareCollector(target(vcenter, tls)).read()
    slow_read = VmwareCollector(dataclasses.replace(target(vcenter, tls), fast_parser=False)).read()
    (fast_raw,), (slow_raw,) = fast_read.answers.values(), slow_read.answers.values()
    assert "vms_read_by" not in fast_raw and "hosts_read_by" not in fast_raw  # no fallback to pyvmomi
    # both slimmed to exactly what the normaliser reads, in the same order
    assert fast_raw["hosts"] == slow_raw["hosts"] and fast_raw["vms"] == slow_raw["vms"]
    assert {d["_type"] for vm in fast_raw["vms"] for d in vm["config.hardware.device"]} == {
        "VirtualDisk", "VirtualE1000", "ParaVirtualSCSIController"}
    fast, slow = (VmwareCollector(r.target).result(r) for r in (fast_read, slow_read))
    assert fast.status == slow.status == "ok"
    for table in ("vms", "vm_disks", "vm_nics", "hosts", "host_nics", "clusters", "networks", "storage", "host_storage"):
        mine, theirs = getattr(fast.inventory, table), getattr(slow.inventory, table)
        assert sorted(map(repr, mine)) == sorted(map(repr, theirs)), table
    assert len(fast.inventory.vms) == 3 * (2 * 1 + 1)  # 3 VMs per resource pool: 2 clusters + 1 standalone
    assert fast.detail and not fast.detail["read_by"] and slow.detail and not slow.detail["read_by"]
    assert {v.instance_name for v in fast.inventory.vms if v.cs_role == "user"} == {"i-2-7-VM & <co>"}
    assert [v.name for v in fast.inventory.vms if v.cs_role == "worker"] == ["DC0_H0_VM0"]
    stored = []
    for name, result in (("fast", fast), ("slow", slow)):
        with open_store(tmp_path / f"{name}.db") as store:
            scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.20", "test", None), [result])
            findings = run_checks(store, scan_id, "4.20", scanned=[result])
            assert run_checks(store, scan_id, "4.20") == findings  # as `check` reads it back
            rows = [{k: v for k, v in r.items() if k != "scan_id"} for r in store.rows("findings", scan_id)]
            stored.append((sorted(map(repr, findings)), rows, store.finding_objects(scan_id)))
    assert stored[0] == stored[1]
    _, rows, objects = stored[0]
    assert any(r["object_count"] > 1 for r in rows) and len(objects) == sum(r["object_count"] for r in rows)
    assert any(r["rule_id"] == "unmanaged-vms" and r["object_type"] == "cluster" for r in rows)


def test_the_fast_parser_reads_escapes_and_unusual_devices() -> None:
    from collectors.vmware_fast import FastPathError, parse_objects
    xml = ('<objects><obj type="VirtualMachine">vm-1</obj><propSet><name>name</name><val xsi:type="xsd:string">'
           'a &amp; b &lt;c&gt;</val></propSet><propSet><name>config.hardware.numCPU</name><val xsi:type="xsd:int">4'
           '</val></propSet><propSet><name>config.template</name><val xsi:type="xsd:boolean">true</val></propSet>'
           '<propSet><name>config.hardware.device</name><val xsi:type="ArrayOfVirtualDevice">'
           '<VirtualDevice xsi:type="VirtualVmxnet3"><key>4001</key><deviceInfo><label>Network adapter 2</label>'
           '</deviceInfo><backing xsi:type="VirtualEthernetCardNetworkBackingInfo"><deviceName>VM &amp; Net</deviceName>'
           '<network type="Network">network-9</network></backing><macAddress>00:50:56:AA:BB:CC</macAddress>'
           '</VirtualDevice></val></propSet></objects>')
    (record,) = parse_objects(xml)
    assert record["name"] == "a & b <c>" and record["config.hardware.numCPU"] == 4 and record["config.template"] is True
    (nic,) = record["config.hardware.device"]
    assert nic["_type"] == "VirtualVmxnet3" and nic["key"] == 4001
    assert nic["backing"] == {"deviceName": "VM & Net", "network": "network-9"}
    with pytest.raises(FastPathError):
        parse_objects('<objects><obj type="VirtualMachine">vm-2</obj><propSet><name>x</name>'
                      '<val xsi:type="ArrayOfString"><string>a</string></val></propSet></objects>')


def test_the_fast_path_keeps_what_slim_vm_keeps_and_reads_host_values_or_refuses_them() -> None:
    """A VM's devices: disks, NICs (a MAC, or a NIC's type) and the controller a disk names — the last device with
    that key — as slim_vm keeps them from pyvmomi's objects; host values with escapes and attributes read, and
    one not shaped as expected refused (the collector then reads the hosts with pyvmomi)."""
    from collectors.vmware_fast import parse_objects
    from collectors.vmware_fast_hosts import HostValueNotRead
    from collectors.vmware_slim import kept_devices, slim_host

    def device(kind: str, key: int, body: str = "") -> str:
        return f'<VirtualDevice xsi:type="{kind}"><key>{key}</key>{body}</VirtualDevice>'
    devices = [device("VirtualLsiLogicController", 1000, "<busNumber>0</busNumber>"),
               device("VirtualDisk", 2000, '<deviceInfo><label>Hard disk 1</label></deviceInfo><backing xsi:type="B">'
                      '<fileName>[ds] a &amp; b.vmdk</fileName><datastore type="Datastore">datastore-1</datastore>'
                      '<thinProvisioned>true</thinProvisioned></backing><controllerKey>1000</controllerKey>'
                      '<unitNumber>0</unitNumber><capacityInKB>1024</capacityInKB>'),
               device("VirtualVmxnet", 4000, '<deviceInfo><label>Network adapter 1</label></deviceInfo><backing '
                      'xsi:type="N"><deviceName>VM Network</deviceName><network type="Network">network-1</network>'
                      '</backing><macAddress>00:50:56:aa:bb:cc</macAddress>'),
               device("VirtualE1000", 4001), device("VirtualKeyboard", 600)]
    xml = ('<objects><obj type="VirtualMachine">vm-1</obj><propSet><name>config.hardware.device</name>'
           f'<val xsi:type="ArrayOfVirtualDevice">{"".join(devices)}</val></propSet></objects>')
    (record,) = parse_objects(xml)
    plain = [{"_type": "VirtualLsiLogicController", "key": 1000, "busNumber": 0},
             {"_type": "VirtualDisk", "key": 2000, "deviceInfo": {"label": "Hard disk 1"},
              "backing": {"fileName": "[ds] a & b.vmdk", "datastore": "datastore-1", "thinProvisioned": True},
              "controllerKey": 1000, "unitNumber": 0, "capacityInKB": 1024},
             {"_type": "VirtualVmxnet", "key": 4000, "deviceInfo": {"label": "Network adapter 1"},
              "backing": {"deviceName": "VM Network", "network": "network-1"}, "macAddress": "00:50:56:aa:bb:cc"},
             {"_type": "VirtualE1000", "key": 4001}, {"_type": "VirtualKeyboard", "key": 600}]
    assert record["config.hardware.device"] == kept_devices(plain) == [
        {"_type": "VirtualLsiLogicController", "key": 1000}, *plain[1:4]]  # the keyboard goes; a NIC without a MAC stays
    firewall = ('<propSet><name>config.firewall</name><val xsi:type="HostFirewallInfo"><ruleset><key>a&amp;b</key>'
                '<rule><port>902</port><direction>outbound</direction><portType>dst</portType><protocol>tcp</protocol>'
                '</rule><rule><port>902</port><direction>inbound</direction><portType>dst</portType>'
                '<protocol>udp</protocol></rule>'
                '<rule><port>902</port><direction>inbound</direction><portType>dst</portType><protocol>tcp</protocol>'
                '</rule><enabled>true</enabled><allowedHosts><allIp>true</allIp></allowedHosts></ruleset></val>'
                '</propSet>')
    (host,) = parse_objects(f'<objects><obj type="HostSystem">host-1</obj>{firewall}</objects>', nested=True)
    # only inbound TCP rules are kept: the only ones the normaliser reads (most of a host's rules are not)
    assert slim_host(host)["config.firewall"] == {"ruleset": [{"key": "a&b", "enabled": True, "rule": [
        {"port": 902, "endPort": None, "direction": "inbound", "protocol": "tcp"}]}]}
    with pytest.raises(HostValueNotRead):
        parse_objects(f'<objects><obj type="HostSystem">host-1</obj>{firewall.replace("<ruleset>", "<ruleset a=1>")}'
                      '</objects>', nested=True)
    # a rule's fields are read in the WSDL's order (port, endPort, direction, portType, protocol), escapes and a
    # range included; a rule written otherwise is not guessed at: the hosts go to pyvmomi
    ranged = firewall.replace("<port>902</port><direction>inbound</direction><portType>dst</portType><protocol>tcp",
                              "<port>5900</port><endPort>6105</endPort><direction>&#105;nbound</direction>"
                              "<protocol>tcp")
    (host,) = parse_objects(f'<objects><obj type="HostSystem">host-1</obj>{ranged}</objects>', nested=True)
    assert slim_host(host)["config.firewall"]["ruleset"][0]["rule"] == [
        {"port": 5900, "endPort": 6105, "direction": "inbound", "protocol": "tcp"}]
    for odd in (firewall.replace("<port>902</port><direction>outbound</direction>",
                                 "<direction>outbound</direction><port>902</port>"),
                firewall.replace("<ruleset><key>a&amp;b</key>", "<ruleset><label>x</label><key>a&amp;b</key>")):
        with pytest.raises(HostValueNotRead):
            parse_objects(f'<objects><obj type="HostSystem">host-1</obj>{odd}</objects>', nested=True)


def test_filters_and_the_vcenter_itself(vcenter: Vcsim, tls: Any) -> None:
    import dataclasses
    only = VmwareCollector(dataclasses.replace(target(vcenter, tls), clusters=("DC0_C1",))).collect()
    assert [c.name for c in only.inventory.clusters] == ["DC0_C1"]
    assert {h.cluster_key for h in only.inventory.hosts} == {only.inventory.clusters[0].key}
    assert len(only.inventory.vms) == 3 and {v.cluster_key for v in only.inventory.vms} == {only.inventory.clusters[0].key}
    none = VmwareCollector(dataclasses.replace(target(vcenter, tls), datacenters=("Elsewhere",))).collect()
    assert not none.inventory.hosts and not none.inventory.vms
    # a name that matches nothing (a typo, a renamed cluster) was an `ok` target of 0 hosts, and exit 0
    assert none.status == "partial" and "datacenters 'Elsewhere' match no datacenter of this vCenter (it has: DC0)" \
        in (none.error or ""), none.error
    typo = VmwareCollector(dataclasses.replace(target(vcenter, tls), clusters=("DC0_C1", "DC0_C9"))).collect()
    assert typo.status == "partial" and len(typo.inventory.hosts) == len(only.inventory.hosts)
    assert "clusters 'DC0_C9' match no cluster of this vCenter (it has: DC0_C0, DC0_C1" in (typo.error or ""), typo.error
    assert only.status == "ok", only.error
    everything = VmwareCollector(target(vcenter, tls)).collect()
    assert everything.detail and everything.detail["api_type"] == "VirtualCenter"
    assert everything.detail["version"] == "6.5.0" and everything.detail["license_editions"] == ["eval"]


def test_datastore_search_folders_and_a_datastore_that_cannot_be_searched() -> None:
    """Folders as vSphere and govmomi's simulator write them give the path of a VM's disk; a datastore whose search
    is refused (no Datastore.Browse) is a listed problem and the others are still read."""
    from types import SimpleNamespace

    from collectors.base import Calls
    from collectors.vmware_files import datastore_files, join
    assert [join(f, "d.vmdk") for f in ("[ds]", "[ds] vm", "[ds] vm/", "[ds]/vm", "[ds]/a/b")] == \
        ["[ds] d.vmdk", "[ds] vm/d.vmdk", "[ds] vm/d.vmdk", "[ds] vm/d.vmdk", "[ds] a/b/d.vmdk"]

    class Browser:
        def __init__(self, moid: str) -> None:
            self.moid = moid

        def SearchDatastoreSubFolders_Task(self, datastorePath: str, searchSpec: Any) -> Any:  # noqa: N802
            if self.moid == "ds-2":
                raise RuntimeError("NoPermission: Datastore.Browse")
            files = [SimpleNamespace(path=p, fileSize=s) for p, s in (("a.vmdk", 7), ("a-flat.vmdk", 9))]
            return SimpleNamespace(info=SimpleNamespace(state="success", result=[
                SimpleNamespace(folderPath=f"{datastorePath} vm", file=files)]))

    def spec(**_: Any) -> Any:
        return None
    vim = SimpleNamespace(Datastore=lambda moid, stub: SimpleNamespace(browser=Browser(moid)), host=SimpleNamespace(
        DatastoreBrowser=SimpleNamespace(SearchSpec=spec, VmDiskQuery=spec, FileInfo=SimpleNamespace(Details=spec))))
    rows = [{"_moid": "ds-1", "name": "one"}, {"_moid": "ds-2", "name": "two"},
            {"_moid": "ds-3", "name": "gone", "summary": {"accessible": False}}]
    found, problems = datastore_files(None, rows, 5.0, Calls(), vim)
    assert found == {"ds-1": [{"path": "[one] vm/a.vmdk", "size": 7}]}
    assert problems == {"ds-2": "datastore two: its files not listed (NoPermission: Datastore.Browse)"}


def test_disk_files_of_vms_a_filter_leaves_out_are_never_judged_leaks() -> None:
    """A cluster filter reads some VMs only; the datastore's files of the others stay in their VMs' folders: kind
    ``vm-file``, which the storage-leak rule does not judge. A file in a folder of its own is a ``disk``."""
    import dataclasses

    from fixtures.cases import HERE, load_case, replay
    read = load_case(HERE / "vmware" / "vcsim-small")
    read.target = dataclasses.replace(read.target, clusters=("DC0_C0",))
    answer = next(iter(read.answers.values()))
    ((moid, files),) = answer["datastore_files"].items()
    files.append({"path": "[LocalDS_0] i-2-9-VM/ROOT-9.vmdk", "size": 1})
    images = {i.path: i.kind for i in replay(read).inventory.storage_images}
    assert images.pop("[LocalDS_0] i-2-9-VM/ROOT-9.vmdk") == "disk"
    assert images and set(images.values()) == {"vm-file"}
    assert any("DC0_H0_VM" in path for path in images)  # a standalone host's VM, filtered out


class _SwitchingProxy:
    """A man in the middle: its first ``passed`` connections are relayed as they are (vCenter's own certificate,
    which the pin matches); every later one is answered with another certificate, relayed to vCenter, and what
    the client sent on it kept in ``captured``."""

    def __init__(self, upstream: Vcsim, cert: tuple[Path, Path], passed: int) -> None:
        import ssl
        import threading
        self.upstream, self.passed, self.captured, self.seen = upstream, passed, bytearray(), 0
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.seen += 1
            try:
                self._serve(client)
            except OSError:  # ssl.SSLError too: the client hung up on the other certificate
                client.close()

    def _serve(self, client: socket.socket) -> None:
        import ssl
        import threading
        upstream = socket.create_connection((self.upstream.host, self.upstream.port))
        kept = None
        if self.seen > self.passed:
            client = self.server_context.wrap_socket(client, server_side=True)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            upstream = context.wrap_socket(upstream)
            kept = self.captured
        threading.Thread(target=self._relay, args=(client, upstream, kept), daemon=True).start()
        threading.Thread(target=self._relay, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _relay(source: socket.socket, sink: socket.socket, kept: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if kept is not None:
                    kept.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("passed", [1, 2, 3, 4, 5, 50])  # a scan opens 6 connections; 50: none met
def test_a_pin_is_checked_on_every_connection_before_anything_is_sent(vcenter: Vcsim, tls: Any, tmp_path: Path,
                                                                      passed: int) -> None:
    other = self_signed(tmp_path / "other", name="not-vcenter")
    proxy = _SwitchingProxy(vcenter, other, passed)
    try:
        pinned = target(vcenter, tls, ca_file=None, port=proxy.port, fingerprint=sha256_fingerprint(tls[0]),
                        datastore_files=True)
        result = VmwareCollector(pinned).collect()
    finally:
        proxy.close()
    assert bytes(proxy.captured) == b"", "a request was sent to a certificate that is not the pinned one"
    if proxy.seen > passed:  # a connection met the other certificate: refused, said in one line
        assert result.status == "failed", result.error
        assert result.error and "\n" not in result.error and "fingerprint" in result.error
        assert "HostConnectFault" not in result.error and result.error.count("vmware 127.0.0.1") == 1, result.error
        assert PASSWORD not in result.error
    else:  # the proxy relays faithfully: the pin holds for vCenter's own certificate on every connection
        assert result.status == "ok", result.error


def test_a_cluster_filter_outside_the_chosen_datacenters_matches_nothing_and_says_so() -> None:
    """datacenters = ["DC1"], clusters = ["B"] with B in DC2: 0 hosts, and the target was `ok`."""
    from collectors.vmware_normalise import normalise_vcenter
    raw = {"datacenters": [{"name": "DC1", "hostFolder": "f1"}, {"name": "DC2", "hostFolder": "f2"}],
           "clusters": [{"_moid": "c1", "name": "A", "parent": "f1", "host": []},
                        {"_moid": "c2", "name": "B", "parent": "f2", "host": []}], "hosts": [], "vms": []}
    inv = normalise_vcenter(raw, "vc", datacenters=["DC1"], clusters=["B"])
    assert inv.unmatched == ["clusters 'B' match no cluster of this vCenter's datacenters DC1 (they have: A)"]
    assert normalise_vcenter(raw, "vc", datacenters=["DC1"], clusters=["A"]).unmatched == []
