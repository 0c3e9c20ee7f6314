"""Scheduled audits: drift between real scans, overlapping runs, history and prune, safe
exports, and secrets that never reach the database, logs, exports or error messages."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import libvirt
import pytest

from fixtures.libvirtd import LabDomain, define_domains, remove_domains
from fixtures.sshd import SshServer
from inventory import ConfigError, diff_scans, history, open_store, prune
from inventory.checks import Finding, store_findings
from tests.conftest import TOOL, run_tool
from tests.test_store import result, scan_row

DRIFT_POOL = "cs-inventory-drift"
DRIFT_PATH = Path("/var/lib/libvirt/images") / DRIFT_POOL


def local_config(folder: Path, extra: str = "") -> Path:
    config = folder / "cs-inventory.toml"
    config.write_text(f'[database]\npath = "inv.db"\n[[kvm]]\nname = "local"\ncluster = "c1"\n'
                      f'hosts = ["localhost"]\nuri = "qemu:///system"\nssh_facts = false\n{extra}')
    return config


def resize(conn: libvirt.virConnect, name: str, memory_mib: int, vcpus: int) -> None:
    """As `virsh setmaxmem/setmem/setvcpus --config` would: the same domain, bigger."""
    root = ET.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for tag in ("memory", "currentMemory"):
        element = root.find(tag)
        if element is not None:
            element.text, element.attrib = str(memory_mib * 1024), {"unit": "KiB"}
    vcpu = root.find("vcpu")
    assert vcpu is not None
    vcpu.text = str(vcpus)
    conn.defineXML(ET.tostring(root, encoding="unicode"))


@pytest.mark.heavy
def test_diff_of_two_real_scans_shows_exactly_what_changed(real_domains: Any, tmp_path: Path) -> None:
    names = ["i-903-1-VM", "i-903-2-VM", "i-903-3-VM", "i-903-4-VM"]
    remove_domains(names, DRIFT_POOL)
    define_domains([LabDomain("i-903-2-VM"), LabDomain("i-903-3-VM", memory_mib=64, vcpus=1),
                    LabDomain("i-903-4-VM")], DRIFT_POOL, DRIFT_PATH)
    config = local_config(tmp_path)
    try:
        assert run_tool("scan", "--config", str(config)).returncode == 0
        define_domains([LabDomain("i-903-1-VM")], DRIFT_POOL, DRIFT_PATH)         # defined
        conn = libvirt.open("qemu:///system")
        conn.lookupByName("i-903-2-VM").create()                                  # started
        resize(conn, "i-903-3-VM", memory_mib=96, vcpus=2)                       # resized
        conn.lookupByName("i-903-4-VM").undefine()                                # undefined
        conn.close()
        assert run_tool("scan", "--config", str(config)).returncode == 0
        diff = run_tool("diff", "--config", str(config), "--format", "json")
        assert diff.returncode == 0, diff.stderr
    finally:
        remove_domains(names, DRIFT_POOL)
    report = json.loads(diff.stdout)
    assert (report["old_scan"], report["new_scan"]) == (1, 2)
    got = {(c["table"], c["change"], c["name"] or c["key"].split("/")[-1], tuple(sorted(c["fields"])))
           for c in report["changes"]}
    assert got == {
        ("vms", "added", "i-903-1-VM", ()),
        ("vm_disks", "added", "vda", ()),
        ("vm_nics", "added", "net0", ()),
        ("vms", "changed", "i-903-2-VM", ("power_state",)),
        ("vms", "changed", "i-903-3-VM", ("memory_bytes", "vcpus")),
        ("vms", "removed", "i-903-4-VM", ()),
        ("vm_disks", "removed", "vda", ()),
        ("vm_nics", "removed", "net0", ()),
    }
    changed = {c["name"]: c["fields"] for c in report["changes"] if c["change"] == "changed"}
    assert changed["i-903-2-VM"]["power_state"] == {"old": "stopped", "new": "running"}
    assert changed["i-903-3-VM"]["vcpus"] == {"old": 1, "new": 2}
    assert changed["i-903-3-VM"]["memory_bytes"] == {"old": 64 * 2**20, "new": 96 * 2**20}
    table = run_tool("diff", "--config", str(config))
    assert "i-903-3-VM" in table.stdout and "vcpus: 1 → 2" in table.stdout
    rows = run_tool("diff", "1", "2", "--config", str(config), "--format", "ndjson").stdout.splitlines()
    assert {json.loads(r)["field"] for r in rows if json.loads(r)["change"] == "changed"} == {
        "power_state", "memory_bytes", "vcpus"}


def test_a_failed_target_is_not_compared_never_removed(tmp_path: Path) -> None:
    store = open_store(tmp_path / "inv.db")
    store.write_scan(scan_row(), [result("t1", vms=3), result("t2", vms=2)])
    gone = result("t2", vms=0)
    gone.status, gone.error, gone.inventory = "failed", "t2: connection refused", type(gone.inventory)()
    store.write_scan(scan_row("partial"), [result("t1", vms=4), gone])
    report = diff_scans(store)
    assert [(c.table, c.change, c.target) for c in report.changes] == [
        ("vms", "added", "t1"), ("vm_disks", "added", "t1")]
    assert report.not_compared[0]["target"] == "t2"


@pytest.mark.heavy
def test_overlapping_scans_wait_or_exit_cleanly(sshd: SshServer, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    config = local_config(tmp_path, extra=f"""
[[kvm]]
name = "slow"
hosts = ["127.0.0.1"]
ssh_port = {listener.getsockname()[1]}
ssh_key = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
connect_timeout = 30
host_timeout = 4
""")
    first = subprocess.Popen([str(TOOL), "scan", "--config", str(config)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "inv.db.lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first run holds the writer lock (it writes its pid there)
    refused = run_tool("scan", "--config", str(config), "--lock-timeout", "1")
    waited = subprocess.Popen([str(TOOL), "scan", "--config", str(config), "--lock-timeout", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first.communicate(timeout=60)
    waited.communicate(timeout=60)
    listener.close()
    assert refused.returncode == 5
    assert "being written by another cs-inventory" in refused.stderr and "\n" not in refused.stderr.split("hint:")[0].strip()
    assert (first.returncode, waited.returncode) == (3, 3)  # "slow" never answers: partial, both times
    db = sqlite3.connect(tmp_path / "inv.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    scans = db.execute("SELECT id, status, started_at, finished_at FROM scans ORDER BY id").fetchall()
    assert [s[1] for s in scans] == ["partial", "partial"]
    assert scans[1][2] >= scans[0][3]  # the second started collecting after the first was written
    for scan_id in (1, 2):
        assert db.execute("SELECT COUNT(*) FROM targets WHERE scan_id = ?", [scan_id]).fetchone() == (2,)


def test_history_and_prune(tmp_path: Path) -> None:
    store = open_store(tmp_path / "inv.db")
    for status in ("ok", "partial", "ok", "failed", "partial"):
        store.write_scan(scan_row(status), [result(vms=1000)])
    rows = history(store)
    assert [r["id"] for r in rows] == [5, 4, 3, 2, 1] and rows[0]["vms"] == 1000
    assert rows[1]["status"] == "failed"
    before = prune(store, keep=1, dry_run=True)
    assert before.removed == [1, 2, 4] and before.protected == [3, 5]  # latest ok and latest stored
    done = prune(store, keep=1)
    assert done.removed == [1, 2, 4]
    assert [r["id"] for r in history(store)] == [5, 3]
    assert store.query("SELECT COUNT(*) AS n FROM vms")[0]["n"] == 2000
    assert done.bytes_after < done.bytes_before
    with pytest.raises(ConfigError):
        prune(store)


def test_prune_older_than(tmp_path: Path) -> None:
    store = open_store(tmp_path / "inv.db")
    old = scan_row()
    for started in ("2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-03-30T00:00:00+00:00"):
        store.write_scan(type(old)(started, started, "ok", None, None, "t", None), [result()])
    now = datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert prune(store, older_than="30d", now=now).removed == [1, 2]
    assert prune(store, older_than="1d", now=now + timedelta(days=100)).removed == []  # latest ok stays


@pytest.mark.heavy
def test_exports_are_inert_and_secrets_never_leak(tmp_path: Path) -> None:
    """A tenant's formula for a name comes out inert; agent.properties' passphrase and a password
    written into the config never reach the database, the log, the exports or the messages."""
    host = tmp_path / "td" / "evil.xml"
    host.parent.mkdir()
    host.write_text(
        "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active>"
        "<mhz>2000</mhz><model>x86_64</model></cpu><memory>8388608</memory>"
        "<domain type='test'><name>=HYPERLINK(&quot;evil.example&quot;,&quot;y&quot;)</name>"
        "<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain></node>")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "inv.db"\n[[kvm]]\nname = "td"\nhosts = ["evil"]\n'
                      f'uri = "test://{tmp_path / "td"}/{{host}}.xml"\nssh_facts = false\n')
    log = tmp_path / "audit.log"
    scan = run_tool("--debug", "--log-file", str(log), "--log-format", "json", "scan", "--config", str(config))
    assert scan.returncode == 0, scan.stderr
    out = tmp_path / "vms.csv"
    run_tool("export", "--config", str(config), "--output", str(out))
    text = out.read_text()
    assert "'=HYPERLINK(\"\"evil.example\"\",\"\"y\"\")" in text  # quoted by CSV, inert by the apostrophe
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(log.stat().st_mode) == 0o600
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["message"] for e in events][0] == "scan started" and events[-1]["message"] == "scan stored"

    password = "Sup3r-Secret-Pa55"
    leaky = tmp_path / "leaky.toml"
    leaky.write_text(f'[[kvm]]\nname = "x"\nhosts = ["h"]\npassword = "{password}"\n')
    bad = run_tool("--debug", "--log-file", str(log), "scan", "--config", str(leaky))
    assert bad.returncode == 2 and "unknown key 'password'" in bad.stderr
    everything = [bad.stdout, bad.stderr, log.read_text(), text]
    everything += [json.dumps(r) for r in sqlite3.connect(tmp_path / "inv.db").execute(
        "SELECT * FROM hosts UNION ALL SELECT * FROM hosts").fetchall()]
    assert not any(password in chunk for chunk in everything)


@pytest.mark.heavy
def test_agent_keystore_passphrase_never_stored_logged_or_exported(real_domains: Any, sshd: SshServer,
                                                                   tmp_path: Path) -> None:
    secret = "keystore-Pa55-do-not-store"
    agent = tmp_path / "agent.properties"
    agent.write_text(f"zone=1\npod=1\ncluster=1\nkeystore.passphrase={secret}\nguid=x\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "inv.db"\n[[kvm]]\nname = "real"\nhosts = ["127.0.0.1"]\n'
                      f'ssh_port = {sshd.port}\nssh_key = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"\n'
                      f'agent_properties = "{agent}"\n')
    log = tmp_path / "debug.log"
    scan = run_tool("--debug", "--log-file", str(log), "scan", "--config", str(config))
    assert scan.returncode == 0, scan.stderr
    exports = [run_tool("export", "--config", str(config), "--table", t, "--format", "json").stdout
               for t in ("hosts", "targets", "endpoints")]
    database = (tmp_path / "inv.db").read_bytes() + (tmp_path / "inv.db-wal").read_bytes() \
        if (tmp_path / "inv.db-wal").exists() else (tmp_path / "inv.db").read_bytes()
    assert secret.encode() not in database
    for chunk in [scan.stdout, scan.stderr, log.read_text(), *exports]:
        assert secret not in chunk
    assert json.loads(exports[0])[0]["agent_zone"] == "1"


def test_permission_warnings_for_secret_files(tmp_path: Path) -> None:
    from inventory.config import Config, permission_warnings
    from inventory.model import TargetConfig
    from dataclasses import dataclass

    from inventory.config import Secret as S

    @dataclass(frozen=True)
    class VaultTarget(TargetConfig):
        password: S | None = None

    secret = tmp_path / "pw"
    secret.write_text("x")
    os.chmod(secret, 0o644)
    config_file = tmp_path / "c.toml"
    config_file.write_text("")
    os.chmod(config_file, 0o644)
    config = Config(path=config_file, database_path=tmp_path / "db",
                    targets=(VaultTarget(name="v", password=S("file", str(secret))),))
    warnings = permission_warnings(config_file, config)
    assert len(warnings) == 2 and all("chmod 600" in w for w in warnings)
    os.chmod(secret, 0o600)
    os.chmod(config_file, 0o600)
    assert permission_warnings(config_file, config) == ()


def test_diff_reports_findings_new_and_resolved(tmp_path: Path) -> None:
    store = open_store(tmp_path / "inv.db")
    first = store.write_scan(scan_row(), [result("t1", vms=1)])
    second = store.write_scan(scan_row(), [result("t1", vms=1)])
    finding = Finding("host-memory", "error", "host", "h1", "t1", "h1 has 2 GiB", cluster="c1")
    store_findings(store, first, [finding, finding._replace(rule_id="xen-pool-ha", message="HA is off")])
    store_findings(store, second, [finding._replace(rule_id="time-synchronised", message="clock drifts")])
    report = diff_scans(store, first, second)
    assert [f["rule_id"] for f in report.findings_new] == ["time-synchronised"]
    assert sorted(f["rule_id"] for f in report.findings_resolved) == ["host-memory", "xen-pool-ha"]
    assert {r["change"] for r in report.rows()} == {"finding-new", "finding-resolved"}
