"""The KVM collector against the real libvirtd (QEMU driver), locally and over qemu+ssh://
through a real sshd, with SSH facts from the same sshd — and the real failure cases."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.kvm import KvmCollector, KvmTarget
from fixtures.sshd import SshServer, free_port, keygen, known_hosts_lines, start_sshd
from tests.conftest import REAL_DOMAINS, virsh

pytestmark = pytest.mark.heavy


def ssh_target(sshd: SshServer, **extra: Any) -> KvmTarget:
    settings: dict[str, Any] = dict(name="real", hosts=("127.0.0.1",), ssh_port=sshd.port,
                                    ssh_key=sshd.client_key, known_hosts=sshd.known_hosts,
                                    connect_timeout=3.0, host_timeout=20.0)
    settings.update(extra)
    return KvmTarget(**settings)


def virsh_view() -> dict[str, dict[str, Any]]:
    """What `virsh list --all` and `virsh dominfo/domblklist/domiflist` say, independently of us."""
    view = {}
    for name in virsh("list", "--all", "--name").split():
        info = dict(line.split(":", 1) for line in virsh("dominfo", name).splitlines() if ":" in line)
        blk = [line.split() for line in virsh("domblklist", name, "--details").splitlines()[2:] if line.strip()]
        ifs = [line.split() for line in virsh("domiflist", name).splitlines()[2:] if line.strip()]
        view[name] = {
            "uuid": info["UUID"].strip(), "state": info["State"].strip(),
            "vcpus": int(info["CPU(s)"]), "memory": int(info["Used memory"].split()[0]) * 1024,
            "disks": {row[2]: row[3] for row in blk if row[1] == "disk"},
            "macs": sorted(row[4] for row in ifs), "bridges": sorted(row[2] for row in ifs),
        }
    return view


def check_matches_virsh(result: Any) -> None:
    assert result.status == "ok", result.error
    inv = result.inventory
    (host,) = inv.hosts
    expected = virsh_view()
    stored = {v.name: v for v in inv.vms}
    assert sorted(stored) == sorted(expected)  # every domain virsh lists, and only those
    for name, want in expected.items():
        vm = stored[name]
        assert vm.key == want["uuid"] and vm.host_key == host.key
        assert vm.power_state == {"running": "running", "shut off": "stopped"}[want["state"]]
        assert (vm.vcpus, vm.memory_bytes) == (want["vcpus"], want["memory"])
        disks = {d.device: d for d in inv.vm_disks if d.vm_key == vm.key and d.disk_type == "disk"}
        assert {dev: d.path for dev, d in disks.items()} == want["disks"]
        assert all(d.capacity_bytes and d.format == "qcow2" for d in disks.values())
        nics = [n for n in inv.vm_nics if n.vm_key == vm.key]
        assert sorted(n.mac for n in nics) == want["macs"]
        assert sorted(n.network_name for n in nics) == want["bridges"]
    ours = {d.name: d for d in REAL_DOMAINS}
    for name, dom in ours.items():
        vm = stored[name]
        assert vm.cs_role == {"i": "user", "r": "router", "u": "unmanaged"}[name[0]]
        disks = [d for d in inv.vm_disks if d.vm_key == vm.key]
        assert sorted(d.capacity_bytes for d in disks) == sorted(s * 2**20 for s in dom.disks_mib)
        assert all(d.storage_key for d in disks)  # each disk lies in the test pool


def test_local_read_only_connection_matches_virsh(real_domains: Any) -> None:
    result = KvmCollector(KvmTarget(name="local", hosts=("localhost",), uri="qemu:///system",
                                    ssh_facts=False)).collect()
    check_matches_virsh(result)
    host = result.inventory.hosts[0]
    caps_uuid = subprocess.run(["virsh", "-c", "qemu:///system", "capabilities"], capture_output=True,
                               text=True, check=True).stdout.split("<uuid>")[1].split("</uuid>")[0]
    assert host.key == caps_uuid and host.libvirt_version and host.hypervisor_version
    assert host.cpu_model and host.memory_bytes and host.libvirt_hvm is True


def test_over_qemu_ssh_with_ssh_facts(real_domains: Any, sshd: SshServer, tmp_path: Path) -> None:
    agent = tmp_path / "agent.properties"
    agent.write_text("zone=4\npod=5\ncluster=6\nguid=g-1-LibvirtComputingResource\nhost=10.0.0.1\n"
                     "private.network.device=cloudbr0\nkeystore.passphrase=SHOULD-NOT-LEAK\n")
    result = KvmCollector(ssh_target(sshd, agent_properties=str(agent))).collect()
    check_matches_virsh(result)
    host = result.inventory.hosts[0]
    os_release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    assert host.os_version == os_release["VERSION_ID"].strip('"')
    assert (host.agent_zone, host.agent_pod, host.agent_cluster, host.agent_private_device) == ("4", "5", "6", "cloudbr0")
    assert host.agent_state == "not-installed"
    assert host.dev_kvm == Path("/dev/kvm").exists()
    assert "SHOULD-NOT-LEAK" not in repr(result)
    nics = {n.device for n in result.inventory.host_nics}
    assert {"cloudbr0", "cloudbr1"} <= nics  # the bridges the domains use exist on the host
    assert result.endpoints[0].api_calls >= len(virsh_view()) + 2


def test_a_fact_command_that_hangs_is_unknown_not_fatal(real_domains: Any, sshd: SshServer) -> None:
    # a FIFO with no writer makes `cat agent.properties` block: the command timeout ends it
    fifo = sshd.folder / "hang.fifo"
    if not fifo.exists():
        subprocess.run(["mkfifo", str(fifo)], check=True)
    result = KvmCollector(ssh_target(sshd, agent_properties=str(fifo), command_timeout=1.0)).collect()
    assert result.status == "ok"
    host = result.inventory.hosts[0]
    assert host.agent_zone is None and host.os_name  # the other facts arrived
    assert (host.raw_json or {})["agent_properties"] is None
    assert result.duration_s < 10


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Accepts TCP connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_each_failure_is_recorded_and_the_rest_completes(
        real_domains: Any, sshd: SshServer, silent_listener: int, tmp_path: Path) -> None:
    other_key = tmp_path / "stranger_ed25519"
    keygen(other_key, "stranger")
    changed = tmp_path / "changed_known_hosts"
    changed.write_text(known_hosts_lines(("127.0.0.1",), sshd.port, Path(f"{other_key}.pub").read_text()))
    cases = {
        "closed-port": dict(ssh_port=free_port()),
        "silent": dict(ssh_port=silent_listener, connect_timeout=2.0),
        "key-refused": dict(ssh_key=other_key),
        "host-key-changed": dict(known_hosts=changed),
        "host-key-unknown": dict(known_hosts=tmp_path / "empty_known_hosts"),
    }
    (tmp_path / "empty_known_hosts").write_text("")
    reasons = {}
    for name, extra in cases.items():
        result = KvmCollector(ssh_target(sshd, name=name, **extra)).collect()
        assert result.status == "failed", name
        assert result.duration_s < 15, name
        (endpoint,) = result.endpoints
        assert endpoint.error and "\n" not in endpoint.error
        reasons[name] = endpoint.error
    assert "connection refused" in reasons["closed-port"]
    assert "timed out" in reasons["silent"] or "no answer" in reasons["silent"]
    assert "refused" in reasons["key-refused"] and "Permission denied" in reasons["key-refused"]
    assert "mismatch" in reasons["host-key-changed"] or "not in" in reasons["host-key-changed"]
    assert "not in" in reasons["host-key-unknown"]


def test_paramiko_checks_host_keys_strictly(real_domains: Any, sshd: SshServer, tmp_path: Path) -> None:
    from collectors.ssh_facts import SshSession
    from inventory.errors import HostKeyRejected
    stranger = tmp_path / "k"
    keygen(stranger, "x")
    changed = tmp_path / "kh"
    changed.write_text(known_hosts_lines(("127.0.0.1",), sshd.port, Path(f"{stranger}.pub").read_text()))
    for known in (changed, tmp_path / "missing"):
        with pytest.raises(HostKeyRejected) as caught:
            SshSession("127.0.0.1", port=sshd.port, user="root", key_file=sshd.client_key, known_hosts=known,
                       timeout=3, command_timeout=3)
        assert "\n" not in caught.value.one_line()
        assert str(known) in caught.value.one_line() or "mismatch" in caught.value.one_line()


def test_a_host_that_answers_slowly_is_cut_at_host_timeout(real_domains: Any, sshd: SshServer,
                                                           silent_listener: int) -> None:
    # ssh's own connect timeout set high: only our per-host deadline can end it
    result = KvmCollector(ssh_target(sshd, ssh_port=silent_listener, connect_timeout=60.0,
                                     host_timeout=2.0)).collect()
    assert result.status == "failed"
    assert "no answer within 2s" in (result.error or "")
    assert "127.0.0.1: 127.0.0.1:" not in (result.error or ""), result.error  # the host named once
    assert result.duration_s < 6


def test_libssh_transports_are_refused_at_config_load_and_why(sshd: SshServer, tmp_path: Path) -> None:
    """qemu+libssh is refused with its reason; the reason, shown against the real sshd: without an event loop,
    getCapabilities over libssh does not return (with libvirt's loop it takes 5 s per large answer)."""
    import threading

    import libvirt

    from tests.conftest import run_tool
    for transport in ("libssh", "libssh2"):
        config = tmp_path / f"{transport}.toml"
        config.write_text(f'[[kvm]]\nname = "k"\nhosts = ["h"]\nuri = "qemu+{transport}://{{user}}@{{host}}/system"\n')
        done = run_tool("scan", "--config", str(config))
        assert done.returncode == 2 and f"{transport} transport is not supported" in done.stderr, done.stderr
    uri = (f"qemu+libssh://root@127.0.0.1:{sshd.port}/system?keyfile={sshd.client_key}&known_hosts={sshd.known_hosts}"
           "&known_hosts_verify=normal&sshauth=privkey")
    answered: list[int] = []

    def capabilities() -> None:
        answered.append(len(libvirt.openReadOnly(uri).getCapabilities()))
    worker = threading.Thread(target=capabilities, daemon=True)
    worker.start()
    worker.join(3)
    assert not answered, "libssh answered: the refusal may be lifted (see KvmTarget)"


def test_many_host_names_in_parallel(real_domains: Any, tmp_path: Path) -> None:
    """Eight loopback addresses, one sshd: each its own SSH session and libvirt connection."""
    addresses = tuple(f"127.0.0.{i}" for i in range(1, 9))
    server = start_sshd(tmp_path / "multi", addresses=addresses)
    try:
        target = KvmTarget(name="multi", hosts=addresses, ssh_port=server.port, ssh_key=server.client_key,
                           known_hosts=server.known_hosts, connect_timeout=5.0)
        result = KvmCollector(target).collect()
    finally:
        server.stop()
    assert result.status == "ok", result.error
    assert len(result.inventory.hosts) == 8
    slowest = max(e.duration_s for e in result.endpoints)
    total = sum(e.duration_s for e in result.endpoints)
    assert result.duration_s < total  # in parallel, not one after another
    assert result.duration_s < slowest * 3 + 1


def test_lab_domains_left_by_another_checkout_are_defined_again_on_this_ones_pool(libvirtd: str) -> None:
    """Two checkouts' labs on one machine share its libvirtd: the second's domains must not keep disks in the
    first's pool (its CloudStack view then finds no volume on any pool, and the lab cannot plant its differences)."""
    import libvirt

    from fixtures.libvirtd import LabDomain, define_domains, remove_domains
    pool, name = "cs-inventory-moved", "i-905-1-VM"
    first, second = (Path("/var/lib/libvirt/images") / pool / where for where in ("first", "second"))
    remove_domains([name], pool)
    try:
        define_domains([LabDomain(name)], pool, first)
        define_domains([LabDomain(name)], pool, second)
        conn = libvirt.open(libvirtd)
        try:
            xml = conn.lookupByName(name).XMLDesc(0)
        finally:
            conn.close()
        assert f"{second}/{name}-0.qcow2" in xml and f"{first}/" not in xml
    finally:
        remove_domains([name], pool)
