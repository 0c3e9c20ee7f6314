"""The KVM normaliser on recorded host output (no host needed)."""

import json
from pathlib import Path

from collectors.kvm_normalise import normalise_host, parse_facts
from collectors.ssh_facts import fact_commands, fact_script, parse_script_output
from inventory import open_store, run_checks
from inventory.model import TargetResult
from inventory.store import ScanRow

CAPS = """<capabilities><host><uuid>4c4c4544-0000-1111-2222-333333333333</uuid><cpu><arch>x86_64</arch>
<model>Cascadelake-Server</model><vendor>Intel</vendor><topology sockets='2' dies='1' cores='16' threads='2'/>
<feature name='vmx'/><feature name='avx512f'/></cpu></host>
<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest></capabilities>"""
DOMAIN = """<domain type='kvm'><name>i-2-10-VM</name><uuid>AAAAAAAA-0000-0000-0000-000000000001</uuid>
<description>CentOS 7</description><memory unit='KiB'>2097152</memory><currentMemory unit='KiB'>1048576</currentMemory>
<vcpu placement='static' current='2'>4</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/mnt/pool-a/vol-1'/><target dev='vda' bus='virtio'/></disk>
<disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='rbdpool/vol-2'/><target dev='vdb' bus='virtio'/></disk>
<disk type='volume' device='disk'><source pool='localpool' volume='vol-3'/><target dev='vdc' bus='virtio'/></disk>
<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
<interface type='bridge'><mac address='06:AA:BB:CC:DD:01'/><source bridge='cloudbr0'/><target dev='vnet0'/><model type='virtio'/></interface>
<interface type='bridge'><mac address='06:aa:bb:cc:dd:02'/><source bridge='br-ovs'/><virtualport type='openvswitch'/><model type='e1000'/></interface>
<interface type='network'><mac address='52:54:00:00:00:03'/><source network='default'/></interface>
</devices></domain>"""
POOL_A = """<pool type='netfs'><name>pool-a</name><uuid>11111111-0000-0000-0000-00000000000a</uuid>
<source><host name='nfs.example'/><dir path='/export/primary'/><format type='nfs'/></source><target><path>/mnt/pool-a</path></target></pool>"""
POOL_L = """<pool type='dir'><name>localpool</name><uuid>11111111-0000-0000-0000-00000000000b</uuid><target><path>/var/lib/libvirt/images</path></target></pool>"""
POOL_S = """<pool type='dir'><name>shared</name><uuid>11111111-0000-0000-0000-00000000000c</uuid><target><path>/srv/gfs2/primary</path></target></pool>"""
LINKS = [
    {"ifname": "lo", "link_type": "loopback", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"}]},
    {"ifname": "eno1", "link_type": "ether", "address": "aa:00:00:00:00:01", "mtu": 9000, "master": "bond0", "flags": ["UP", "LOWER_UP"], "addr_info": []},
    {"ifname": "bond0", "link_type": "ether", "address": "aa:00:00:00:00:01", "mtu": 9000, "master": "cloudbr0", "flags": ["UP", "LOWER_UP"], "linkinfo": {"info_kind": "bond"}, "addr_info": []},
    {"ifname": "cloudbr0", "link_type": "ether", "address": "aa:00:00:00:00:01", "mtu": 9000, "flags": ["UP", "LOWER_UP"], "linkinfo": {"info_kind": "bridge"},
     "addr_info": [{"family": "inet", "local": "10.1.1.21", "prefixlen": 24, "scope": "global"}, {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    {"ifname": "bond0.200", "link_type": "ether", "mtu": 1500, "master": "cloudbr1", "flags": ["UP", "LOWER_UP"], "linkinfo": {"info_kind": "vlan", "info_data": {"id": 200}}, "addr_info": []},
    {"ifname": "cloudbr1", "link_type": "ether", "mtu": 1500, "flags": ["UP"], "linkinfo": {"info_kind": "bridge"},
     "addr_info": [{"family": "inet", "local": "192.168.5.9", "prefixlen": 24, "scope": "global", "dynamic": True}]},
    {"ifname": "br-ovs", "link_type": "ether", "mtu": 1500, "flags": ["UP", "LOWER_UP"], "linkinfo": {"info_kind": "openvswitch"}, "addr_info": []},
    {"ifname": "eno2", "link_type": "ether", "mtu": 1500, "master": "ovs-system", "flags": ["UP", "LOWER_UP"], "addr_info": []},
    {"ifname": "vnet7", "link_type": "ether", "mtu": 1500, "master": "cloudbr0", "flags": ["UP", "LOWER_UP"], "linkinfo": {"info_kind": "tun"}, "addr_info": []},
]
AGENT = "zone=1\npod=1\ncluster=3\nguid=abc-LibvirtComputingResource\nhost=10.1.1.5\nprivate.network.device=cloudbr0\nkeystore.passphrase=TOPSECRET\n"


def ok(out: str) -> dict[str, object]:
    return {"rc": 0, "out": out}


FACTS = {
    "os_release": ok('NAME="Rocky Linux"\nID="rocky"\nVERSION_ID="9.4"\n'),
    "uname": ok("Linux 5.14.0-427.el9.x86_64 x86_64\n"),
    "cpu_virt": ok("vmx\ndev_kvm\n"),
    "agent_package": ok("install ok installed|4.20.0.0-1"),
    "agent_service": ok("active\n"),
    "agent_properties": ok(AGENT),
    "links": ok(json.dumps(LINKS)),
    "default_route": ok('[{"dst":"default","dev":"cloudbr0"}]'),
    "ovs": ok("br-ovs:eno2 \n"),
    "mounts": ok("nfs.example:/export/primary /mnt/pool-a nfs4 rw 0 0\nnfs2:/sec /mnt/secondary\\040store nfs rw 0 0\n"
                 "/dev/sdb1 /srv/gfs2 gfs2 rw 0 0\n"),
    "timesync": {"rc": 127, "out": ""},
    "fqdn": ok("kvm21.example.org\n"),
    "distro_release": ok("redhat-release=Rocky Linux release 9.4 (Blue Onyx)\n"),
    "java": ok('openjdk version "17.0.11" 2024-04-16 LTS\n'),
    "selinux": ok("mode=Permissive\nSELINUX=permissive\n"),
    "apparmor": ok(""),
    "libvirtd_conf": ok('listen_tls = 1\nlisten_tcp = 0\ntls_port = "16514"\ntcp_port = "16509"\nauth_tcp = "none"\n'
                        'mdns_adv = 0\n/etc/sysconfig/libvirtd:LIBVIRTD_ARGS="--listen"\n'
                        'libvirt.conf:remote_mode="legacy"\n'),
    "libvirtd_sockets": ok("libvirtd.socket=masked\nlibvirtd-ro.socket=masked\nlibvirtd-admin.socket=masked\n"
                           "libvirtd-tls.socket=masked\nlibvirtd-tcp.socket=masked\nvirtqemud.socket=disabled\n"
                           "libvirtd.args=/usr/sbin/libvirtd --listen\n"),
    "agent_certificates": ok("cloud.jks\ncloud.crt\ncloud.ca.crt\ncloud.key\nuefi.properties\n"),
    "listening": ok("0.0.0.0:22\n0.0.0.0:16514\n[::]:16514\n"),
    "agent_connections": ok("10.1.1.5:8250\n"),
    "firewall": ok("firewalld=inactive\n"),
    "ovs_version": ok("ovs-vsctl (Open vSwitch) 2.17.9\n"),
    "bridge_module": ok("loaded\n"),
    "aria2": ok("/usr/bin/aria2c\n"),
    "routes": ok('[{"dst":"default","gateway":"10.1.1.1","dev":"cloudbr0"},{"dst":"10.1.1.0/24","dev":"cloudbr0"},'
                 '{"dst":"169.254.0.0/16","dev":"cloud0"}]'),
}
DOMCAPS = """<domainCapabilities><path>/usr/libexec/qemu-kvm</path><domain>kvm</domain><arch>x86_64</arch><os supported='yes'>
<enum name='firmware'><value>efi</value></enum><loader supported='yes'><value>/usr/share/edk2/ovmf/OVMF_CODE.fd</value>
<value>/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd</value><enum name='type'><value>rom</value><value>pflash</value></enum>
</loader></os></domainCapabilities>"""


def raw(facts: dict[str, object] | None = FACTS) -> dict[str, object]:
    return {"address": "10.1.1.21", "capabilities": CAPS, "domain_capabilities": DOMCAPS,
            "node_info": ["x86_64", 385000, 64, 2900, 2, 2, 16, 2],
            "lib_version": 9000000, "hv_version": 8002000, "hv_type": "QEMU", "hostname": "kvm21.example",
            "domains": [{"xml": DOMAIN, "stats": {"state.state": 1, "block.count": 1, "block.0.name": "vda",
                                                  "block.0.capacity": 10737418240, "block.0.allocation": 123}}],
            "pools": [{"xml": POOL_A, "active": True, "info": [2, 1000, 400, 600]},
                      {"xml": POOL_L, "active": False, "info": [0, 0, 0, 0]},
                      {"xml": POOL_S, "active": True, "info": [2, 50, 10, 40]}],
            "networks": [], "interfaces": [], "facts": facts}


def test_host_from_capabilities_and_facts() -> None:
    inv = normalise_host(raw(), "zone1", "cluster1")
    (host,) = inv.hosts
    assert host.key == "4c4c4544-0000-1111-2222-333333333333"
    assert (host.cpu_vendor, host.cpu_model, host.cpu_sockets, host.cpu_cores, host.cpu_threads) == (
        "Intel", "Cascadelake-Server", 2, 16, 2)
    assert host.memory_bytes == 385000 * 2**20 and host.cpu_mhz == 2900
    assert (host.hypervisor_version, host.libvirt_version) == ("8.2.0", "9.0.0")
    assert host.hvm is True and host.libvirt_hvm is True and host.dev_kvm is True
    assert (host.os_id, host.os_name, host.os_version, host.kernel_version) == (
        "rocky", "Rocky Linux", "9.4", "5.14.0-427.el9.x86_64")
    assert (host.agent_version, host.agent_state) == ("4.20.0.0-1", "active")
    assert (host.agent_zone, host.agent_pod, host.agent_cluster, host.agent_guid) == (
        "1", "1", "3", "abc-LibvirtComputingResource")
    assert host.agent_private_device == "cloudbr0" and host.time_synced is None
    assert "TOPSECRET" not in json.dumps(host.raw_json)
    assert host.raw_json and host.raw_json["unknown_facts"] == ["timesync"]


def test_requirement_facts_from_the_fact_script() -> None:
    (host,) = normalise_host(raw(), "zone1", "cluster1").hosts
    assert (host.host_os, host.fqdn, host.java_version) == ("Rocky Linux", "kvm21.example.org", "17.0.11")
    assert (host.selinux_mode, host.apparmor_libvirt, host.firewall) == ("permissive", None, "none")
    assert (host.ovs_version, host.agent_certificates, host.libvirt_tls, host.agent_connected) == (
        "2.17.9", True, True, True)
    assert host.uefi_firmware is True and host.raw_json
    assert host.raw_json["uefi_loaders"][0] == "/usr/share/edk2/ovmf/OVMF_CODE.fd"
    libvirtd = host.raw_json["libvirtd"]
    assert libvirtd["conf"]["listen_tls"] == "1" and libvirtd["conf"]["tls_port"] == "16514"
    assert libvirtd["startup"] == {"LIBVIRTD_ARGS": "--listen"} and libvirtd["conf"]["remote_mode"] == "legacy"
    assert libvirtd["sockets"]["libvirtd.socket"] == "masked" and "--listen" in libvirtd["args"]
    assert host.raw_json["routes"][2] == {"dst": "169.254.0.0/16", "dev": "cloud0"}
    assert host.raw_json["aria2"] == "/usr/bin/aria2c" and host.raw_json["uefi_properties"] is True
    # an Ubuntu host: lsb-release names it; AppArmor's libvirt profiles enforced; UFW on
    facts = dict(FACTS, distro_release=ok("DISTRIB_ID=Ubuntu\n"),
                 apparmor=ok("enabled\nlibvirtd (enforce)\nvirt-aa-helper (enforce)\n"),
                 firewall=ok("firewalld=\n/etc/default/ufw:DEFAULT_FORWARD_POLICY=\"DROP\"\n/etc/ufw/ufw.conf:ENABLED=yes\n"),
                 java={"rc": 127, "out": ""}, aria2={"rc": 127, "out": ""})
    (ubuntu,) = normalise_host(raw(facts), "zone1", "cluster1").hosts
    assert (ubuntu.host_os, ubuntu.apparmor_libvirt, ubuntu.firewall, ubuntu.java_version) == (
        "Ubuntu", "enforce", "ufw", None)
    assert ubuntu.raw_json and ubuntu.raw_json["firewall_settings"]["DEFAULT_FORWARD_POLICY"] == "DROP"
    assert ubuntu.raw_json["missing_commands"] == ["timesync", "java", "aria2"] and "aria2" not in ubuntu.raw_json


def test_domain_disks_and_nics() -> None:
    inv = normalise_host(raw(), "zone1", "cluster1")
    (vm,) = inv.vms
    assert (vm.key, vm.cs_role, vm.cs_account_id, vm.cs_id) == ("aaaaaaaa-0000-0000-0000-000000000001", "user", 2, 10)
    assert (vm.vcpus, vm.memory_bytes, vm.power_state, vm.guest_os) == (2, 2**30, "running", "CentOS 7")
    disks = {d.device: d for d in inv.vm_disks}
    assert disks["vda"].storage_key == "11111111-0000-0000-0000-00000000000a"
    assert (disks["vda"].format, disks["vda"].capacity_bytes, disks["vda"].allocation_bytes) == ("qcow2", 10737418240, 123)
    assert disks["vdb"].path == "rbd:rbdpool/vol-2" and disks["vdb"].storage_key is None
    assert disks["vdc"].storage_key == "11111111-0000-0000-0000-00000000000b"
    assert disks["hdc"].disk_type == "cdrom" and disks["hdc"].path is None
    nics = inv.vm_nics
    assert [n.mac for n in nics] == ["06:aa:bb:cc:dd:01", "06:aa:bb:cc:dd:02", "52:54:00:00:00:03"]
    assert [n.network_key for n in nics] == ["bridge:cloudbr0", "bridge:br-ovs", "libvirt:default"]
    assert [n.device for n in nics] == ["net0", "net1", "net2"]


def test_pools_mounts_and_shared_mount_points() -> None:
    inv = normalise_host(raw(), "zone1", "cluster1")
    kinds = {s.name: (s.kind, s.shared, s.source) for s in inv.storage}
    assert kinds["pool-a"] == ("nfs", True, "nfs.example:/export/primary")
    assert kinds["localpool"] == ("local", False, None)
    assert kinds["shared"][:2] == ("sharedmountpoint", True)  # a dir pool on a gfs2 mount
    assert kinds["nfs2:/sec"] == ("nfs", True, "nfs2:/sec")  # a mount no pool covers
    attached = {a.storage_key: (a.attached, a.mount_path) for a in inv.host_storage}
    assert attached["11111111-0000-0000-0000-00000000000b"] == (False, "/var/lib/libvirt/images")
    assert attached["mount:nfs2:/sec"] == (True, "/mnt/secondary store")
    assert "mount:nfs.example:/export/primary" not in attached  # covered by pool-a


def test_bridges_bonds_vlans_and_ovs() -> None:
    inv = normalise_host(raw(), "zone1", "cluster1")
    networks = {n.key: n.kind for n in inv.networks}
    assert networks == {"bridge:cloudbr0": "bridge", "bridge:cloudbr1": "bridge", "bridge:br-ovs": "ovs"}
    nics = {n.device: n for n in inv.host_nics}
    assert "lo" not in nics and "vnet7" not in nics  # a guest's tap is the guest's NIC, not the host's
    assert nics["cloudbr0"].ip == "10.1.1.21" and nics["cloudbr0"].netmask == "255.255.255.0"
    assert nics["cloudbr0"].is_management and not nics["cloudbr1"].is_management
    assert nics["cloudbr1"].is_dhcp is True and nics["cloudbr0"].is_dhcp is False
    assert nics["cloudbr1"].link_up is False
    assert nics["bond0"].network_key == "bridge:cloudbr0" and nics["eno1"].bond == "bond0"
    assert nics["bond0.200"].vlan == 200 and nics["bond0.200"].network_key == "bridge:cloudbr1"
    assert nics["eno2"].network_key == "bridge:br-ovs" and nics["eno2"].bond is None


def test_missing_commands_leave_facts_unknown_not_false() -> None:
    facts = {name: {"rc": 127, "out": ""} for name in FACTS}
    inv = normalise_host(raw(facts), "zone1", None)
    host = inv.hosts[0]
    assert host.os_name is None and host.agent_state is None and host.time_synced is None
    assert host.hvm is True  # falls back to libvirt's kvm domain type
    assert host.dev_kvm is None
    assert not inv.host_nics or all(n.kind for n in inv.host_nics)


def test_agent_not_installed() -> None:
    facts = dict(FACTS, agent_package=ok("not-installed\n"), agent_service=ok("inactive\n"),
                 agent_properties={"rc": 1, "out": ""})
    host = normalise_host(raw(facts), "zone1", None).hosts[0]
    assert host.agent_state == "not-installed" and host.agent_version is None and host.agent_zone is None


def test_no_ssh_facts_uses_libvirt_interfaces() -> None:
    data = raw(None)
    data["interfaces"] = [{"xml": "<interface type='bridge' name='cloudbr0'><protocol family='ipv4'><ip address='10.0.0.9' prefix='16'/></protocol>"
                                  "<bridge><interface type='ethernet' name='eth0'><mac address='52:54:00:aa:bb:01'/></interface></bridge></interface>",
                           "active": True}]
    inv = normalise_host(data, "zone1", None)
    assert {(n.device, n.network_key) for n in inv.host_nics} == {("cloudbr0", "bridge:cloudbr0"), ("eth0", "bridge:cloudbr0")}
    assert [n.key for n in inv.networks] == ["bridge:cloudbr0"]


def test_time_sync_from_timedatectl_or_chrony() -> None:
    assert parse_facts({"timesync": ok("yes\n")})["time_synced"] is True
    assert parse_facts({"timesync": ok("no\n")})["time_synced"] is False
    assert parse_facts({"timesync": ok("Reference ID : 1\nLeap status     : Normal\n")})["time_synced"] is True
    assert parse_facts({"timesync": ok("Leap status     : Not synchronised\n")})["time_synced"] is False


def test_fact_script_output_splits_back_per_command() -> None:
    commands = fact_commands("/etc/cloudstack/agent/agent.properties")
    script = fact_script(commands, 5)
    assert script.count("@@cs-inventory-begin") == len(commands)
    text = ("@@cs-inventory-begin os_release\nNAME=x\n\n@@cs-inventory-end os_release 0\n"
            "@@cs-inventory-begin uname\n\n@@cs-inventory-end uname 127\n"
            "@@cs-inventory-begin links\n[]\n@@cs-inventory-end links 0\n@@cs-inventory-begin mounts\npartial")
    parsed = parse_script_output(text, ["os_release", "uname", "links", "mounts", "ovs"])
    assert parsed["os_release"] == {"rc": 0, "out": "NAME=x\n"}
    assert parsed["uname"] == {"rc": 127, "out": ""}
    assert parsed["links"] == {"rc": 0, "out": "[]"}
    assert parsed["mounts"]["rc"] == 124 and parsed["ovs"]["rc"] == 124


def test_storage_capacity_on_kvm_is_cloudstack_s_used_the_pool_s_allocation(tmp_path: Path) -> None:
    """CloudStack's LibvirtStorageAdaptor.getStoragePool reports a pool's used as libvirt's `allocation`, and
    StorageManagerImpl.checkUsagedSpace compares used/capacity with the threshold; on a filesystem pool
    capacity − available also counts the blocks reserved for root, which CloudStack does not."""
    def findings(info: list[int]) -> list[tuple[str | None, str | None]]:
        pools = [{"xml": POOL_A, "active": True, "info": info}]
        inv = normalise_host({**raw(), "pools": pools}, "zone1", "cluster1")
        result = TargetResult(name="kvm", hypervisor="kvm", endpoint="kvm", status="ok", inventory=inv)
        with open_store(tmp_path / f"{info[2]}.db") as store:
            scan_id = store.write_scan(ScanRow("t0", "t1", "ok", None, "4.22", "test", None), [result])
            found = run_checks(store, scan_id, "4.22", only=["storage-capacity"], scanned=[result])
        return [(f.object_key, f.observed) for f in found]
    assert findings([2, 1000, 810, 140]) == []  # 81 % allocated; 5 % reserved makes 1 − available/capacity 86 %
    assert findings([2, 1000, 860, 140]) == [("11111111-0000-0000-0000-00000000000a", "86.0%")]
