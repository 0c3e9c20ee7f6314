"""Many-host KVM clusters through libvirt's own test driver (no daemon)."""

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import libvirt
import pytest

from collectors.kvm import KvmCollector, KvmTarget
from fixtures.testdriver import NFS_POOL_UUID, domain_names, write_cluster


def target(folder: Path, hosts: list[str], **extra: object) -> KvmTarget:
    return KvmTarget(name="td", hosts=tuple(hosts), uri=f"test://{folder}/{{host}}.xml", ssh_facts=False,
                     cluster="cluster-a", **extra)  # type: ignore[arg-type]


def test_every_domain_of_every_host_is_collected_with_its_host(tmp_path: Path) -> None:
    hosts = write_cluster(tmp_path, hosts=50, domains_per_host=40)
    result = KvmCollector(target(tmp_path, [h.name for h in hosts])).collect()
    assert result.status == "ok" and result.error is None
    inv = result.inventory
    assert len(inv.hosts) == 50 and len(inv.vms) == 2000
    assert len(inv.vm_disks) == 4000 and len(inv.vm_nics) == 4000
    assert [c.host_count for c in inv.clusters] == [50]
    # cross-check each host against libvirt's own answer for that host file
    host_keys = {h.address: h.key for h in inv.hosts}
    for index, host in enumerate(hosts):
        conn = libvirt.openReadOnly(f"test://{host.path}")
        expected = {d.name(): (d.UUIDString(), d.info()[3], d.info()[2] * 1024, d.state()[0])
                    for d in conn.listAllDomains(0)}
        conn.close()
        stored = {v.name: (v.key, v.vcpus, v.memory_bytes, v.power_state) for v in inv.vms
                  if v.host_key == host_keys[host.name]}
        assert sorted(stored) == sorted(expected) == sorted(domain_names(index, 40))
        for name, (uuid, vcpus, memory, state) in expected.items():
            assert stored[name][:3] == (uuid, vcpus, memory)
            assert stored[name][3] == {1: "running", 5: "stopped"}[state]
    # the NFS primary pool is one storage object, attached on every host
    nfs = [s for s in inv.storage if s.key == NFS_POOL_UUID]
    assert len(nfs) == 1 and nfs[0].kind == "nfs" and nfs[0].shared
    assert sum(1 for a in inv.host_storage if a.storage_key == NFS_POOL_UUID) == 50
    assert all(d.storage_key == NFS_POOL_UUID for d in inv.vm_disks)
    assert {n.key for n in inv.networks} == {"bridge:cloudbr0", "bridge:cloudbr1"}
    roles = {v.cs_role for v in inv.vms}
    assert roles == {"user", "router", "ssvm", "cpvm", "unmanaged"}
    assert result.api_calls > 50 * 40  # one XML description per domain, at least


def test_a_missing_host_fails_alone(tmp_path: Path) -> None:
    hosts = write_cluster(tmp_path, hosts=3, domains_per_host=5)
    result = KvmCollector(target(tmp_path, [hosts[0].name, "kvm-gone", hosts[2].name])).collect()
    assert result.status == "partial"
    assert len(result.inventory.hosts) == 2
    (failed,) = [e for e in result.endpoints if e.status == "failed"]
    assert failed.endpoint == "kvm-gone" and "kvm-gone" in (failed.error or "")
    assert "\n" not in (result.error or "")


def test_same_host_uuid_twice_keeps_both_hosts(tmp_path: Path) -> None:
    """Two configured names that reach one libvirt (cloned hosts, DNS aliases) are both kept."""
    hosts = write_cluster(tmp_path, hosts=1, domains_per_host=3)
    (tmp_path / "alias.xml").write_text(hosts[0].path.read_text())
    inv = KvmCollector(target(tmp_path, [hosts[0].name, "alias"])).collect().inventory
    assert len({h.key for h in inv.hosts}) == 2
    assert len({v.key for v in inv.vms}) == 6  # the same domains on two hosts stay two rows each
    for vm in inv.vms:
        assert {d.vm_key for d in inv.vm_disks if d.vm_key == vm.key}


def test_cluster_from_agent_properties_when_not_configured(tmp_path: Path) -> None:
    hosts = write_cluster(tmp_path, hosts=2, domains_per_host=1)
    result = KvmCollector(KvmTarget(name="td", hosts=tuple(h.name for h in hosts),
                                    uri=f"test://{tmp_path}/{{host}}.xml", ssh_facts=False)).collect()
    # no cluster configured and no agent.properties read: the target is the cluster
    assert {h.cluster_key for h in result.inventory.hosts} == {"td"}


@pytest.mark.parametrize("bad", ["test:///nonexistent/{host}.xml"])
def test_unreadable_host_file_is_a_one_line_reason(tmp_path: Path, bad: str) -> None:
    result = KvmCollector(KvmTarget(name="td", hosts=("h1",), uri=bad, ssh_facts=False)).collect()
    assert result.status == "failed" and result.error and "h1:" in result.error
    assert "\n" not in result.error


def test_a_shared_pool_is_listed_by_one_host_and_by_the_next_when_its_listing_fails(tmp_path: Path) -> None:
    import libvirt

    from collectors.base import Calls
    from collectors.kvm import PoolClaims, fetch_libvirt
    hosts = write_cluster(tmp_path / "td", hosts=2, domains_per_host=2, pool_volumes=True)
    claims = PoolClaims()
    answers = []
    for host in hosts:
        conn = libvirt.openReadOnly(f"test://{host.path}")
        try:
            answers.append(fetch_libvirt(conn, host.name, f"test://{host.path}", Calls(), claims))
        finally:
            conn.close()
    listed = [sorted(len(p["volumes"]) for p in a["pools"] if "volumes" in p) for a in answers]
    assert listed == [[0, 2 * 2 * 2 + 2], [0]]  # the shared NFS pool once; each host its own (empty) local pool

    class Unlistable:  # a pool whose volumes cannot be listed, as libvirt fails a call
        def __getattr__(self, name: str) -> Any:
            answers = {"isActive": 1, "XMLDesc": "<pool type='netfs'/>", "autostart": 0, "info": [2, 1, 0, 1],
                       "UUIDString": "5b2f4e7c-0000-4000-8000-00000000beef"}
            if name == "listAllVolumes":
                def fail(*_: Any) -> Any:
                    raise libvirt.libvirtError("cannot list")
                return fail
            return lambda *_: answers[name]

    from collectors.kvm import _pool
    assert "volumes" not in _pool(Unlistable(), lambda fn, *args: fn(*args), claims)
    assert claims.claim("5b2f4e7c-0000-4000-8000-00000000beef")  # released: the next host lists it


def test_a_domain_network_pool_or_interface_removed_while_the_host_is_read_is_left_out(tmp_path: Path) -> None:
    """CloudStack expunges VMs while a scan runs: a domain (network, pool, interface) listed, then gone before it is read, is
    left out of that host's answer, and the host is still read (libvirt's test driver, the removal done through it
    between the listing and the reads)."""
    from collectors.base import Calls
    from collectors.kvm import fetch_libvirt
    (host,) = write_cluster(tmp_path / "td", hosts=1, domains_per_host=4)
    conn = libvirt.open(f"test://{host.path}")  # read-write: this test removes what the collector just listed
    for name in ("cloudbr-a", "cloudbr-b"):
        conn.networkDefineXML(f"<network><name>{name}</name><bridge name='{name}'/></network>")
    conn.interfaceDefineXML("<interface type='ethernet' name='eth9'><mac address='52:54:00:00:00:09'/></interface>")
    listed_networks = sorted(n.name() for n in conn.listAllNetworks(0))

    class RemovesAfterListing:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def getAllDomainStats(self, *args: Any) -> Any:
            pairs = self.real.getAllDomainStats(*args)
            gone = pairs[1][0]
            if gone.isActive():
                gone.destroy()
            gone.undefine()
            return pairs

        def listAllNetworks(self, *args: Any) -> Any:
            networks = sorted(self.real.listAllNetworks(*args), key=lambda n: n.name())
            networks[0].undefine()
            return networks

        def listAllInterfaces(self, *args: Any) -> Any:
            interfaces = self.real.listAllInterfaces(*args)
            self.real.interfaceLookupByName("eth9").undefine()
            return interfaces

        def listAllStoragePools(self, *args: Any) -> Any:
            pools = sorted(self.real.listAllStoragePools(*args), key=lambda p: p.name())
            if pools[0].isActive():
                pools[0].destroy()
            pools[0].undefine()
            return pools

    try:
        interfaces_before = sorted(i.name() for i in conn.listAllInterfaces(0))
        pools_before = sorted(p.name() for p in conn.listAllStoragePools(0))
        names_before = sorted(d.name() for d in conn.listAllDomains(0))
        raw = fetch_libvirt(RemovesAfterListing(conn), host.name, f"test://{host.path}", Calls())
        names_after = sorted(d.name() for d in conn.listAllDomains(0))
    finally:
        conn.close()
    assert len(names_after) == len(names_before) - 1
    read = sorted(ET.fromstring(d["xml"]).findtext("name") for d in raw["domains"])
    assert read == names_after
    assert sorted(ET.fromstring(n["xml"]).findtext("name") for n in raw["networks"]) == listed_networks[1:]
    assert len(pools_before) > 1
    assert "eth9" in interfaces_before
    assert sorted(ET.fromstring(i["xml"]).get("name") for i in raw["interfaces"]) == [
        name for name in interfaces_before if name != "eth9"]
    assert sorted(ET.fromstring(p["xml"]).findtext("name") for p in raw["pools"]) == pools_before[1:]
