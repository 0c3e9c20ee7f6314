"""`scan --record DIR` and `import recorded DIR`: a recording stores the same scan as the live read,
keeps no secret, and a recording that is wrong is a one-line error. Against the real servers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.testdriver import write_cluster
from fixtures.xapi.server import XapiServer, serve_dump
from fixtures.xapi.synth import generate
from inventory import ConfigError, import_path, load_config, open_store, scan
from inventory.recording import SECRET_KEYS, file_name, scrub
from inventory.schema import TABLES
from tests.conftest import real_dump_params, run_tool

PASSWORD = "Recorded-Pa55-never-kept"


def stored(db: Path, scan_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of one scan but its scan id and the scan row itself: what a replay must reproduce."""
    store = open_store(db)
    try:
        return {t.name: sorted((json.dumps({k: v for k, v in row.items() if k != "scan_id"}, sort_keys=True)
                                for row in store.rows(t.name, scan_id)))
                for t in TABLES if t.name not in ("scans", "findings")}
    finally:
        store.close()


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[XapiServer]:
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(3, 12, "xcp-ng-8.3", seed="recording"))
    server = serve_dump(dump, password=PASSWORD)
    yield server
    server.stop()


def config_for(tmp_path: Path, pool: XapiServer, extra: str = "") -> Path:
    hosts = write_cluster(tmp_path / "td", hosts=3, domains_per_host=6)
    secret = tmp_path / "pool.secret"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    config = tmp_path / "c.toml"
    names = ", ".join(f'"{h.name}"' for h in hosts)
    config.write_text(f'[database]\npath = "inv.db"\n'
                      f'[[kvm]]\nname = "td / cluster [a]"\ncluster = "c1"\nhosts = [{names}, "kvm-gone"]\n'
                      f'uri = "test://{tmp_path / "td"}/{{host}}.xml"\nssh_facts = false\n'
                      f'[[xenserver]]\nname = "pool"\nurl = "{pool.url}"\npassword_file = "{secret}"\n{extra}')
    config.chmod(0o600)
    return config


def test_a_recording_stores_the_same_scan_as_the_live_read(tmp_path: Path, pool: XapiServer) -> None:
    config = load_config(config_for(tmp_path, pool))
    live = scan(config, record=tmp_path / "rec")
    assert live.status == "partial"  # kvm-gone failed, and is recorded with its reason
    files = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert files == [file_name(0, "td / cluster [a]"), "001-pool.json"] == ["000-td%20%2F%20cluster%20%5Ba%5D.json",
                                                                            "001-pool.json"]
    replayed = import_path("recorded", tmp_path / "rec", config.database_path)
    assert replayed.status == live.status
    assert [(t.name, t.status, t.error, t.api_calls) for t in replayed.targets] == [
        (t.name, t.status, t.error, t.api_calls) for t in live.targets]
    assert stored(config.database_path, replayed.scan_id) == stored(config.database_path, live.scan_id)
    for file in (tmp_path / "rec").iterdir():
        assert file.stat().st_mode & 0o077 == 0
        assert PASSWORD not in file.read_text()


def test_the_command_line_records_and_imports(tmp_path: Path, pool: XapiServer) -> None:
    config = config_for(tmp_path, pool)
    scanned = run_tool("scan", "--config", str(config), "--record", str(tmp_path / "rec"), "--quiet")
    assert scanned.returncode == 3, scanned.stderr  # one host is gone
    imported = run_tool("import", "recorded", str(tmp_path / "rec"), "--config", str(config))
    assert imported.returncode == 3 and "td / cluster [a]" in imported.stdout, imported.stderr
    shown = run_tool("export", "--config", str(config), "--table", "targets", "--format", "json")
    assert [t["name"] for t in json.loads(shown.stdout)] == ["td / cluster [a]", "pool"]
    bad = run_tool("scan", "--config", str(config), "--record", "/proc/no-such/folder")
    said = [line for line in bad.stderr.splitlines() if not line.startswith("warning: target pool: url is http://")]
    assert bad.returncode == 2 and said[0].startswith("error: --record") and len(said) == 2, bad.stderr


@pytest.mark.parametrize("dump", real_dump_params(), ids=lambda p: getattr(p, "name", "real-dumps"))
def test_the_real_pool_dumps_replay_as_they_were_read(dump: Path, tmp_path: Path) -> None:
    server = serve_dump(dump, password=PASSWORD)
    try:
        os.environ["CSI_REC_PW"] = PASSWORD
        config = tmp_path / "c.toml"
        config.write_text(f'[database]\npath = "inv.db"\n[[xenserver]]\nname = "real"\nurl = "{server.url}"\n'
                          'password_env = "CSI_REC_PW"\n')
        live = scan(load_config(config), record=tmp_path / "rec")
    finally:
        server.stop()
    replayed = import_path("recorded", tmp_path / "rec", tmp_path / "inv.db")
    assert live.status == replayed.status == "ok"
    assert stored(tmp_path / "inv.db", replayed.scan_id) == stored(tmp_path / "inv.db", live.scan_id)


def test_secrets_are_blanked_wherever_they_appear() -> None:
    answer = {"PBD": {"r1": {"device_config": {"server": "nfs1", "password": "p", "chappassword": "c",
                                                 "chapuser": "u", "serverpath": "/x"}}},
              "vm": {"config.hardware.device": [{"key": 4000, "macAddress": "00:50:56:00:00:01"}]},
              "session_id": "OpaqueRef:abc", "cookie": "vmware_soap_session=1", "portgroupKey": "dvportgroup-1"}
    clean = json.dumps(scrub(answer))
    for secret in ('"p"', '"c"', '"u"', "OpaqueRef:abc", "vmware_soap_session"):
        assert secret not in clean
    assert "nfs1" in clean and "/x" in clean and "4000" in clean and "dvportgroup-1" in clean
    assert not SECRET_KEYS.search("key") and not SECRET_KEYS.search("macAddress")


@pytest.mark.parametrize("content, says", [
    ("not json", "not a readable recording"),
    ('{"format": "something/1"}', "not a cs-inventory recording"),
    ('{"format": "cs-inventory.recording/1", "kind": "hyperv", "target": {}}', "recorded kind 'hyperv' is not installed"),
    ('{"format": "cs-inventory.recording/1", "kind": "kvm", "target": {"name": "x"}}', "missing key 'hosts'"),
    ('{"format": "cs-inventory.recording/1", "kind": "kvm", "target": {"name": "x", "hosts": ["h"]}, '
     '"endpoints": [], "answers": []}', "answers must map"),
])
def test_a_wrong_recording_is_a_one_line_error(content: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(ConfigError, match=says) as caught:
        import_path("recorded", tmp_path, tmp_path / "inv.db")
    assert "\n" not in caught.value.one_line()
    assert not (tmp_path / "inv.db").exists()  # nothing written for a recording that cannot be read
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no recordings"):
        import_path("recorded", tmp_path / "empty", tmp_path / "inv.db")
    with pytest.raises(ConfigError, match="unknown format"):
        import_path("pcap", tmp_path, tmp_path / "inv.db")


def test_a_recording_that_cannot_be_made_is_logged_and_the_target_kept(tmp_path: Path, pool: XapiServer,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Whatever stops a recording (a full disk, an answer JSON cannot hold) is logged; the target is stored."""
    import inventory.recording
    def refuse(folder: Path, read: Any, position: int = 0) -> Path:
        raise ValueError("Circular reference detected")
    monkeypatch.setattr(inventory.recording, "write", refuse)
    config = load_config(config_for(tmp_path, pool))
    live = scan(config, record=tmp_path / "rec")
    assert [t.status for t in live.targets] == ["partial", "ok"]  # as without --record (a KVM host is gone)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"].count("recording failed") == 2
