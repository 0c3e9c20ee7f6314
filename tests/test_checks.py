"""The CloudStack checks: each rule failing and passing on real or faithful servers, the real
pool dumps giving the findings a reviewer expects (with the reason written down), and the
release-aware limits."""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from collectors.kvm import KvmCollector, KvmTarget
from collectors.xenserver import XenServerCollector, XenTarget
from fixtures.testdriver import write_cluster
from fixtures.xapi.server import serve_dump
from fixtures.xapi.synth import generate
from inventory import ConfigError, exit_code_for, open_store, run_checks, select_rules
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
    # Their VMs are named by people ("16shared", "CentOS 5 (32-bit) (2)"), not CloudStack instances.
    assert {f.severity for f in findings["unmanaged-vms"]} == {"info"}
    # dom0 got the installer's ~750 MB; the docs recommend 2940 MB for many VMs (info only).
    assert len(findings["xen-dom0-memory"]) == len(hosts)
    # Management PIFs configured by DHCP are flagged; static ones are not.
    dhcp = [p for p in attrs(dump, "PIF") if p.get("management") == "true" and p.get("ip_configuration_mode") == "DHCP"]
    assert len(findings.get("static-management-address", [])) == len(dhcp)
    if dump.name == "updatesState.xml":
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
    assert detached.severity == "error" and detached.observed == "not attached"
    assert [f.observed for f in findings["storage-capacity"]] == ["90.0%"]


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
    findings = by_rule(check(tmp_path, [xen(crowded)], "4.22"))
    (over,) = findings["guests-per-host"]
    assert over.observed == "1002" and over.expected == "≤ 1000"
    fine = tmp_path / "fine.xml"
    fine.write_text(generate(2, 1252, "xcp-ng-8.3", seed="fine"))
    assert "guests-per-host" not in by_rule(check(tmp_path, [xen(fine)], "4.22"))


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
    skipped = check(tmp_path, [result], skip=["host-memory", "xen-version-known-to-cloudstack"])
    assert not {"host-memory", "xen-version-known-to-cloudstack"} & {f.rule_id for f in skipped}
    assert exit_code_for(only, "error") == 1 and exit_code_for(skipped, "error") == 0
    assert exit_code_for(skipped, "warning") == 1 and exit_code_for(only, "never") == 0
    with pytest.raises(ConfigError, match="no rule"):
        check(tmp_path, [result], only=["no-such-rule"])
    for rule in select_rules():
        assert rule.requirement and rule.remediation and rule.reference and rule.severity in ("error", "warning", "info")
        assert rule.documentation.startswith(rule.requirement)


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
    assert {f.object_key for f in findings["unmanaged-vms"]} >= {
        v.key for v in result.inventory.vms if v.name == "unmanaged-901"}
    host = result.inventory.hosts[0]
    if host.dev_kvm and host.libvirt_hvm:
        assert "kvm-hardware-virtualisation" not in findings


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
    # the simulator is vCenter 6.5 with ESXi 6.5: 4.20 no longer supports vSphere 6.5 (compat.rst @ 4.20)
    assert {f.severity for f in findings["vmware-version-supported"]} == {"error"}
    assert "vmware-version-supported" not in by_rule(check(tmp_path, [result], "4.18.0.0"))  # 6.5 listed there
    # 9 hosts per cluster: under the 6.5 row's 64, over the advised 8
    assert {(f.cluster, f.severity, f.observed) for f in findings["vmware-hosts-per-cluster"]} >= {
        (c.key, "warning", "9") for c in result.inventory.clusters}
    ha_drs = {(f.cluster, f.message.split(": ")[1]) for f in findings["vmware-ha-drs"]}
    c0 = next(c.key for c in result.inventory.clusters if c.name == "DC0_C0")
    c1 = next(c.key for c in result.inventory.clusters if c.name == "DC0_C1")
    assert (c0, "DRS is off") in ha_drs and (c0, "vSphere HA is off") not in ha_drs and (c1, "vSphere HA is off") in ha_drs
    assert [f.object_key for f in findings["host-state"]] == [parked]
    assert "vmware-management-portgroup" not in findings  # every simulated host has vmk0 on Management Network
    # vSwitch0 and the dvPortgroup exist everywhere; vSwitch9 nowhere
    assert {f.expected for f in findings["traffic-labels-on-every-host"]} == {"vSwitch9"}
    assert len(findings["traffic-labels-on-every-host"]) == len(result.inventory.hosts)


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
    (over,) = [f for f in findings["vmware-hosts-per-cluster"] if f.severity == "error"]
    assert over.observed == "65" and over.expected == "≤ 64"  # the VMware 6.5 row: 64 hosts (since 4.13.0.0)


def test_vmware_management_vmk_missing_is_an_error(tmp_path: Path) -> None:
    """A corner the simulator cannot make (its hosts always have vmk0 on Management Network): a small fake."""
    from inventory.model import Host, HostNic, Inventory
    inv = Inventory()
    inv.hosts.append(Host(key="host-1", target="vc", cluster_key="c1", name="esx01", address="esx01",
                          hypervisor="vmware", hypervisor_version="8.0.2", raw_json={"api_version": "8.0.2.0"}))
    inv.host_nics.append(HostNic(host_key="host-1", target="vc", device="vmk0", kind="vmk", bond="Storage"))
    result = TargetResult(name="vc", hypervisor="vmware", endpoint="vc", status="ok", inventory=inv)
    (missing,) = by_rule(check(tmp_path, [result], "4.22"))["vmware-management-portgroup"]
    assert missing.observed == "vmk0 on Storage"


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
            link["addr_info"] = [dict(a, local=a["local"].replace("10.1.1.21", f"10.1.1.{21 + index}"))
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
        {"facts": {"os_release": ok('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n')}},   # another distribution
        {"facts": {"agent_properties": ok(AGENT.replace("cluster=3", "cluster=4"))}},      # agent in another cluster
        {"facts": {"cpu_virt": ok("")}, "raw": {"capabilities": "<capabilities><host><cpu><arch>x86_64</arch>"
                   "<model>Cascadelake-Server</model><vendor>Intel</vendor></cpu></host>"
                   "<guest><os_type>xen</os_type></guest></capabilities>"}},     # no hvm guests, no /dev/kvm
        {"facts": {"timesync": ok("no\n")}, "raw": {"lib_version": 1001000}},  # clock unsynchronised, libvirt 1.1
        {"extra_links": [{"ifname": "eth9", "link_type": "ether", "flags": ["UP", "LOWER_UP"],
                          "addr_info": [{"family": "inet", "local": "169.254.3.3", "prefixlen": 16, "scope": "global"}]}]},
    ]
    result = kvm_from_recorded(tmp_path, variants)
    index_of = {h.key: str(int(h.address.rsplit(".", 1)[1]) - 21) for h in result.inventory.hosts}
    findings = by_rule(check(tmp_path, [result], "4.20"))

    def hosts_in(rule: str) -> list[str]:
        return sorted(index_of[f.object_key] for f in findings.get(rule, []))
    assert set(hosts_in("kvm-cluster-same-os")) == {"1"}            # Ubuntu 22.04 among Rocky Linux 9.4 hosts
    assert hosts_in("kvm-agent-settings-agree") == ["2"]            # cluster=4 while its mates say 3
    assert hosts_in("kvm-hardware-virtualisation") == ["3"]
    assert hosts_in("time-synchronised") == ["4"]
    assert hosts_in("kvm-libvirt-minimum") == ["4"] and findings["kvm-libvirt-minimum"][0].observed == "1.1.0"
    assert hosts_in("kvm-cluster-same-versions") == ["4"]
    assert hosts_in("kvm-link-local-free") == ["5"]
    # the reference host breaks nothing host-specific (duplicate MACs/UUIDs come from the recorded domain on all)
    assert "0" not in {index_of.get(f.object_key) for rule, items in findings.items() for f in items
                       if rule not in ("duplicate-mac", "duplicate-uuid", "unmanaged-vms")}


def test_xen_hardware_virtualisation(tmp_path: Path) -> None:
    def no_hvm(root: ET.Element) -> None:
        rows_of(root, "host")[1].set("capabilities", "('xen-3.0-x86_64' '')")
    findings = by_rule(check(tmp_path, [xen(edited_pool(tmp_path, no_hvm))]))
    assert len(findings["xen-hardware-virtualisation"]) == 1


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
        assert (f.rule_id, f.severity, f.observed, f.expected, f.remediation) == (r.id, r.severity, "3", None,
                                                                                 r.remediation)
    overridden = r.finding(host, "m", severity="error", cluster="group")
    assert (overridden.severity, overridden.cluster) == ("error", "group")


# -- rules for every kind ---------------------------------------------------------------------------
GENERIC = {"cluster-same-cpu", "duplicate-mac", "duplicate-uuid", "shared-storage-on-every-host", "storage-capacity",
           "unmanaged-vms", "host-state", "data-volumes-per-vm", "static-management-address",
           "traffic-labels-on-every-host"}


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
    assert set(findings) <= GENERIC  # 1 GiB hosts, hvm False: host-memory and the like name their kinds


def test_generic_rules_are_for_every_registered_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from inventory import docs, registry
    assert "cloudstack_api" in registry.kinds() and "cloudstack_api" not in registry.hypervisor_kinds()
    assert not select_rules(["host-state"])[0].runs_on({"cloudstack_api"})  # CloudStack's API is no hypervisor
    monkeypatch.setattr(registry, "hypervisor_kinds", lambda: ("kvm", "xenserver", "vmware", "toy"))
    catalogue = {r.id: r for r in select_rules()}
    assert {r.id for r in catalogue.values() if r.is_for_any_kind} == GENERIC
    assert catalogue["host-state"].hypervisors == {"kvm", "xenserver", "vmware", "toy"}
    assert catalogue["host-state"].hypervisors_shown == "any"
    assert catalogue["host-memory"].hypervisors == {"kvm", "xenserver"}
    assert catalogue["host-memory"].hypervisors_shown == "kvm, xenserver"
    assert catalogue["xen-pool-ha"].runs_on({"xenserver"}) and not catalogue["xen-pool-ha"].runs_on({"toy"})
    assert catalogue["host-state"].runs_on({"toy"}) and not catalogue["host-state"].runs_on(set())
    assert "| `host-state` | warning | any |" in docs.rules_table()


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
