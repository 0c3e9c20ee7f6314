"""The XenServer collector with the real XenAPI client against the XAPI fixture server, loaded
with the real pool dumps in ../shared/testdata/xapi and with synthetic current-release dumps."""

from __future__ import annotations

import http.client
import json
import socket
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from collectors.xapi_dump import load_dump, to_api
from collectors.xenserver import CLASSES, XenServerCollector, XenTarget, read_dump
from fixtures.xapi.server import XapiServer, serve_dump
from fixtures.xapi.synth import RELEASES, generate
from fixtures.xapi.tls import self_signed, sha256_fingerprint
from inventory import ConfigError
from inventory.model import Secret

from tests.conftest import REAL_DUMPS, real_dump, real_dump_params

PASSWORD_ENV = "CSI_TEST_XEN_PASSWORD"


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "xenroot")


def target(url: str, **extra: Any) -> XenTarget:
    return XenTarget(name="pool", url=url, password=Secret("env", PASSWORD_ENV), **extra)


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-host XCP-ng 8.3 pool: for what is about the wire, not about the data."""
    dump = tmp_path_factory.mktemp("small") / "small-pool.xml"
    dump.write_text(generate(1, 4, "xcp-ng-8.3", seed="small"))
    return dump


@pytest.fixture
def server_for() -> Iterator[Any]:
    started: list[XapiServer] = []

    def start(dump: Path, **options: Any) -> XapiServer:
        started.append(serve_dump(dump, **options))
        return started[-1]
    yield start
    for server in started:
        server.stop()


def result_from_dump(path: Path, name: str) -> Any:
    read = read_dump(path, name)
    return XenServerCollector(read.target).result(read)


def rows(dump: Path, table: str) -> dict[str, dict[str, str]]:
    """The dump read with nothing but ElementTree: an independent view of what it holds."""
    root = ET.parse(dump).getroot()
    found = root.find(f"table[@name='{table}']")
    return {} if found is None else {r.get("ref", ""): dict(r.attrib) for r in found.findall("row")}


def test_the_real_dumps_are_there() -> None:
    if not REAL_DUMPS:
        pytest.skip("../shared/testdata/xapi is not beside this clone")
    assert len(REAL_DUMPS) == 4


SYNTHETIC_VMS = {"xcp-ng-8.2": 9, "xenserver-8.4": 7}


@pytest.fixture(params=sorted(SYNTHETIC_VMS))
def synthetic_pool(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    dump = tmp_path / f"{request.param}.xml"
    dump.write_text(generate(2, SYNTHETIC_VMS[request.param], request.param, seed="relations"))
    return dump


@pytest.mark.parametrize("dump", real_dump_params(), ids=lambda p: getattr(p, "name", "real-dumps"))
def test_every_object_of_a_real_pool_is_stored_with_its_relations(dump: Path, server_for: Any) -> None:
    check_every_object(dump, server_for, {"tampa-poolof16and23-xapi-db.xml": 4, "tampa_poolofone_40.xml": 2,
                                          "xapidb_app.xml": 4, "updatesState.xml": 2}[dump.name])  # their README


def test_every_object_of_a_synthetic_pool_is_stored_with_its_relations(synthetic_pool: Path, server_for: Any) -> None:
    check_every_object(synthetic_pool, server_for, SYNTHETIC_VMS[synthetic_pool.stem])


def check_every_object(dump: Path, server_for: Any, vm_count: int) -> None:
    server = server_for(dump)
    result = XenServerCollector(target(server.url)).collect()
    assert result.status == "ok", result.error
    inv = result.inventory
    hosts, vms, srs, nets, pifs = (rows(dump, t) for t in ("host", "VM", "SR", "network", "PIF"))
    uuid_of = {ref: r["uuid"] for table in (hosts, vms, srs, nets) for ref, r in table.items()}
    assert {h.key for h in inv.hosts} == {h["uuid"] for h in hosts.values()}
    real_vms = {ref: v for ref, v in vms.items() if v["is_a_template"] == "false"
                and v["is_a_snapshot"] == "false" and v["is_control_domain"] == "false"}
    assert {v.key for v in inv.vms} == {v["uuid"] for v in real_vms.values()}
    assert len(inv.vms) == vm_count
    assert {s.key for s in inv.storage} == {s["uuid"] for s in srs.values()}
    assert {n.key for n in inv.networks} == {n["uuid"] for n in nets.values()}
    assert len(inv.host_nics) == len([p for p in pifs.values() if p.get("host") in hosts])
    stored = {v.key: v for v in inv.vms}
    for vm in real_vms.values():
        resident = vm.get("resident_on", "OpaqueRef:NULL")
        assert stored[vm["uuid"]].host_key == uuid_of.get(resident)
        assert stored[vm["uuid"]].memory_bytes == int(vm["memory__static_max"])
    vbds, vdis, vifs = rows(dump, "VBD"), rows(dump, "VDI"), rows(dump, "VIF")
    disks = {(d.vm_key, d.device): d for d in inv.vm_disks}
    for vbd in vbds.values():
        if vbd["VM"] in real_vms:
            disk = disks[(uuid_of[vbd["VM"]], vbd["userdevice"])]
            vdi = vdis.get(vbd["VDI"])
            if vdi:
                assert disk.storage_key == uuid_of[vdi["SR"]] and disk.capacity_bytes == int(vdi["virtual_size"])
    nics = {(n.vm_key, n.device): n for n in inv.vm_nics}
    for vif in vifs.values():
        if vif["VM"] in real_vms:
            nic = nics[(uuid_of[vif["VM"]], vif["device"])]
            assert nic.network_key == uuid_of[vif["network"]] and nic.mac == vif["MAC"].lower()
    attached = {(a.host_key, a.storage_key) for a in inv.host_storage}
    for pbd in rows(dump, "PBD").values():
        if pbd["host"] in hosts:
            assert (uuid_of[pbd["host"]], uuid_of[pbd["SR"]]) in attached
    (cluster,) = inv.clusters
    assert cluster.master_host_key in {h.key for h in inv.hosts if h.is_pool_master}
    # constant calls: login, one get_all_records per class, logout — nothing that writes
    assert result.api_calls == len(CLASSES) + 2
    assert set(server.api.calls) == {f"{c}.get_all_records" for c in CLASSES} | {
        "session.login_with_password", "session.logout"}


def test_templates_snapshots_and_control_domains_are_not_vms(server_for: Any, tmp_path: Path) -> None:
    dump = tmp_path / "csi-synth-83.xml"
    dump.write_text(generate(3, 30, "xcp-ng-8.3"))
    result = XenServerCollector(target(server_for(dump).url)).collect()
    inv = result.inventory
    assert len(inv.vms) == 30  # 3 templates, 2 snapshots and 3 dom0s in the dump are not counted
    assert all(h.raw_json and h.raw_json["dom0_memory_bytes"] == 4 * 2**30 for h in inv.hosts)
    assert {v.cs_role for v in inv.vms} == {"user", "router", "ssvm", "cpvm"}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_current_releases(release: str, server_for: Any, tmp_path: Path) -> None:
    dump = tmp_path / f"{release}.xml"
    dump.write_text(generate(4, 40, release))
    result = XenServerCollector(target(server_for(dump).url)).collect()
    assert result.status == "ok", result.error
    host = result.inventory.hosts[0]
    assert (host.product_name, host.hypervisor_version) == (RELEASES[release]["product_brand"],
                                                             RELEASES[release]["product_version"])
    assert (host.cpu_sockets, host.cpu_cores, host.hvm) == (2, 16, True)
    vlan = [n for n in result.inventory.host_nics if n.kind == "vlan"]
    assert len(vlan) == 4 and all(n.vlan == 100 and n.device == "eth1.100" for n in vlan)
    assert sum(1 for n in result.inventory.host_nics if n.is_management) == 4
    nfs = next(s for s in result.inventory.storage if s.kind == "nfs")
    assert nfs.shared and nfs.source == "10.0.0.5:/export/xcp-primary"
    assert sum(1 for a in result.inventory.host_storage if a.storage_key == nfs.key and a.attached) == 4


def test_answers_travel_uncompressed_with_their_length_on_a_kept_connection_like_xapi(server_for: Any,
                                                                                    small_pool: Path) -> None:
    """XAPI writes an answer as it is, with its Content-Length, whatever the client accepts (xen-api
    ocaml/xapi/api_server.ml ``callback``: ``Http_svr.response_fct`` with the string's length; nothing in its HTTP
    library encodes a body): a fixture that gzips would have the client's time go on gunzipping."""
    server = server_for(small_pool)
    host, port = server.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connections = 0
    opened = connection.connect

    def connect() -> None:
        nonlocal connections
        connections += 1
        opened()
    connection.connect = connect  # type: ignore[method-assign]
    try:
        body = xmlrpc.client.dumps(("root", "xenroot", "2.0", "test"), "session.login_with_password").encode()
        connection.request("POST", "/", body, {"Content-Type": "text/xml", "Accept-Encoding": "gzip"})
        login = connection.getresponse()
        answer = login.read()
        handle = xmlrpc.client.loads(answer)[0][0]["Value"]
        body = xmlrpc.client.dumps((handle,), "VM.get_all_records").encode()
        connection.request("POST", "/", body, {"Content-Type": "text/xml", "Accept-Encoding": "gzip"})
        records = connection.getresponse()
        text = records.read()
    finally:
        connection.close()
    assert len(text) > 1400  # longer than where xmlrpc.server starts to gzip
    assert records.getheader("Content-Encoding") is None and text.startswith(b'<?xml version="1.0"?><methodResponse>')
    assert records.getheader("Content-Length") == str(len(text)) and records.getheader("Content-Type") == "text/xml"
    # and over HTTP/1.1, on the connection the client opened, until it closes it (http_svr.ml response_of_request)
    assert (login.version, records.version) == (11, 11) and not login.will_close and not records.will_close
    assert connections == 1


def test_int64_travel_as_strings_like_xapi(server_for: Any, small_pool: Path) -> None:
    server = server_for(small_pool)
    proxy = xmlrpc.client.ServerProxy(server.url)
    login = proxy.session.login_with_password("root", "xenroot", "2.0", "test")
    assert login["Status"] == "Success" and login["Value"].startswith("OpaqueRef:")
    vms = proxy.VM.get_all_records(login["Value"])["Value"]
    record = next(iter(vms.values()))
    assert isinstance(record["memory_static_max"], str) and record["memory_static_max"].isdigit()
    assert isinstance(record["is_a_template"], bool) and isinstance(record["VBDs"], list)
    assert proxy.VM.get_record(login["Value"], "OpaqueRef:nope") == {
        "Status": "Failure", "ErrorDescription": ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]}
    assert proxy.VM.get_all("OpaqueRef:stale")["ErrorDescription"][0] == "SESSION_INVALID"
    ref = next(iter(vms))
    assert proxy.VM.get_by_uuid(login["Value"], record["uuid"])["Value"] == ref
    assert proxy.VM.get_name_label(login["Value"], ref)["Value"] == record["name_label"]


def test_the_next_class_is_asked_for_while_the_last_answer_is_read(server_for: Any, small_pool: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Each class's get_all_records reaches the pool before the last class's answer is read (a second connection on
    the one session, on another thread); the answers, their order and the calls are those of one at a time."""
    import time

    from collectors.base import Calls
    from collectors.xenserver import XenSession
    server = server_for(small_pool)
    asked: dict[str, float] = {}
    read: dict[str, float] = {}
    dispatch = server.api.dispatch

    def noting(method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        asked.setdefault(method.split(".")[0], time.monotonic())
        return dispatch(method, params)
    server.server.instance._dispatch_fn = noting
    records_of = XenSession.records_of

    def slowly(session: XenSession, body: bytes, cls: str) -> Any:
        time.sleep(0.03)  # a big answer's reading
        found = records_of(session, body, cls)
        read[cls] = time.monotonic()
        return found
    monkeypatch.setattr(XenSession, "records_of", slowly)
    collector = XenServerCollector(target(server.url))
    calls = Calls()
    with collector.connect(server.url, calls) as session:
        both = collector.fetch(session)["records"]
        monkeypatch.undo()
        one_by_one = {cls: session.all_records(cls) for cls in CLASSES}
        assert calls.count == 1 + 2 * len(CLASSES)  # the login, and each class twice
    assert all(asked[after] < read[before] for before, after in pairwise(CLASSES))
    assert list(both) == list(CLASSES) and both == one_by_one and both["VM"]
    assert server.api.calls["session.logout"] == 1 and server.api.most_in_flight == 1


def test_a_class_that_fails_fails_the_pool_at_once_whatever_the_class_asked_ahead(
        server_for: Any, small_pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A class's failure is the pool's error at once: the class asked for ahead (slow here) is not waited for, its
    thread does not hold the process, and an answer without its Value is worded as XenAPI words it."""
    import threading
    import time

    from collectors.xenserver import XenSession
    server = server_for(small_pool)
    dispatch = server.api.dispatch
    answers = {"VM.get_all_records": {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", "boom"]}}
    ahead = threading.Event()

    def failing(method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        if method == "VM_metrics.get_all_records":
            ahead.set()
            time.sleep(3)
        return answers.get(method) or dispatch(method, params)
    server.server.instance._dispatch_fn = failing
    records_of = XenSession.records_of

    def once_asked_ahead(session: XenSession, body: bytes, cls: str) -> Any:
        if cls == "VM":
            ahead.wait(2)  # VM_metrics is at the pool when VM's answer is read
        return records_of(session, body, cls)
    monkeypatch.setattr(XenSession, "records_of", once_asked_ahead)
    started = time.monotonic()
    result = XenServerCollector(target(server.url)).collect()
    assert result.status == "failed" and "INTERNAL_ERROR boom" in (result.error or "") and ahead.is_set()
    assert time.monotonic() - started < 2.5
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("xapi-ahead"))
    answers["VM.get_all_records"] = {"Status": "Success"}
    result = XenServerCollector(target(server.url)).collect()
    assert result.status == "failed" and result.error == f"xenapi {server.url}: Missing Value in response from server"


def test_a_session_xapi_forgets_mid_scan_is_logged_in_again(server_for: Any, small_pool: Path) -> None:
    """XAPI restarted during a scan (its sessions gone): the call that is told SESSION_INVALID is made again through
    XenAPI's own session, which logs in again, and the pool is read whole."""
    server = server_for(small_pool)
    plain = XenServerCollector(target(server.url)).collect()
    dispatch = server.api.dispatch

    def restarting(method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        if method == "VM.get_all_records" and server.api.calls["session.login_with_password"] == 2:
            server.api.sessions.clear()
        return dispatch(method, params)
    server.server.instance._dispatch_fn = restarting
    again = XenServerCollector(target(server.url)).collect()
    assert again.status == "ok", again.error
    assert server.api.calls["session.login_with_password"] == 3  # the scans' two, and the second's again
    assert [v.key for v in again.inventory.vms] == [v.key for v in plain.inventory.vms] and plain.inventory.vms


def test_a_pool_member_redirects_to_the_master_once(server_for: Any, small_pool: Path) -> None:
    master = server_for(small_pool, host="127.0.0.2")
    member = server_for(small_pool, host="127.0.0.3", port=master.port, member_of="127.0.0.2")
    result = XenServerCollector(target(member.url)).collect()
    assert result.status == "ok" and len(result.inventory.hosts) == 1
    assert [(e.endpoint, e.status) for e in result.endpoints] == [(member.url, "redirected"), (master.url, "ok")]
    raw = result.inventory.clusters[0].raw_json or {}
    assert raw["configured_is_master"] is False and raw["master_url"] == master.url
    assert member.api.calls["session.login_with_password"] == 1 and not any(
        name.endswith("get_all_records") for name in member.api.calls)


def test_a_failure_after_the_redirect_names_the_master_it_happened_on(server_for: Any, small_pool: Path,
                                                                     tmp_path: Path) -> None:
    """Each host of a pool has a certificate of its own: a pin of the member's, configured, does not match the
    master's. The error says where it failed, and what to pin."""
    member_cert, member_key = self_signed(tmp_path / "member", addresses=("127.0.0.3",))
    master_cert, master_key = self_signed(tmp_path / "master", addresses=("127.0.0.2",))
    master = server_for(small_pool, host="127.0.0.2", tls=(master_cert, master_key))
    member = server_for(small_pool, host="127.0.0.3", port=master.port, member_of="127.0.0.2",
                        tls=(member_cert, member_key))
    result = XenServerCollector(target(member.url, fingerprint=sha256_fingerprint(member_cert))).collect()
    assert result.status == "failed"
    assert (result.error or "").startswith(f"xenapi {master.url} (the master of pool member {member.url}): "
                                           "certificate fingerprint "), result.error
    assert "pin the master's" in (result.error or "")
    pinned = XenServerCollector(target(member.url, fingerprint=sha256_fingerprint(master_cert))).collect()
    assert pinned.status == "failed" and (pinned.error or "").startswith(f"xenapi {member.url}: certificate "
                                                                         "fingerprint"), pinned.error
    both = XenServerCollector(target(member.url, ca_file=master_cert)).collect()  # the member's is not trusted
    assert both.status == "failed" and "certificate not trusted" in (both.error or "")


def test_failures_are_one_line_reasons_within_the_timeout(server_for: Any, tmp_path: Path, small_pool: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path / "tls")
    tls = server_for(small_pool, tls=(cert, key))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    cases = {
        "unknown CA": target(tls.url),
        "wrong fingerprint": target(tls.url, fingerprint="00" * 32),
        "silent server": target(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=1.5, connect_timeout=1.5),
        "refused": target("http://127.0.0.1:1/"),
    }
    reasons = {}
    for case, settings in cases.items():
        result = XenServerCollector(settings).collect()
        assert result.status == "failed" and result.duration_s < 5, case
        assert result.error and "\n" not in result.error
        reasons[case] = result.error
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    reasons["bad password"] = XenServerCollector(target(tls.url, ca_file=cert)).collect().error or ""
    silent.close()
    assert "certificate not trusted" in reasons["unknown CA"]
    assert "fingerprint" in reasons["wrong fingerprint"] and "pinned" in reasons["wrong fingerprint"]
    # each names the pool it is about, once, as every other failure does
    assert reasons["wrong fingerprint"].startswith(f"xenapi {tls.url}: ") and reasons["unknown CA"].startswith(
        f"xenapi {tls.url}: ")
    assert reasons["wrong fingerprint"].count(tls.url) == 1, reasons
    assert "no answer within 1.5s" in reasons["silent server"]
    assert "connection refused" in reasons["refused"]
    assert "SESSION_AUTHENTICATION_FAILED" in reasons["bad password"] and "wrong" not in reasons["bad password"]
    # and the right CA or the right pin work
    monkeypatch.setenv(PASSWORD_ENV, "xenroot")
    assert XenServerCollector(target(tls.url, ca_file=cert)).collect().status == "ok"
    assert XenServerCollector(target(tls.url, fingerprint=sha256_fingerprint(cert))).collect().status == "ok"


@pytest.mark.parametrize("source", ["real", "synthetic"])
def test_a_dump_with_missing_or_malformed_fields_is_reported_not_a_crash(source: str, tmp_path: Path) -> None:
    if source == "real":
        tree = ET.parse(real_dump("tampa_poolofone_40.xml"))
    else:
        tree = ET.ElementTree(ET.fromstring(generate(1, 2, "xcp-ng-8.3", seed="broken")))
    vm_rows = [row for row in tree.getroot().find("table[@name='VM']").findall("row")  # type: ignore[union-attr]
               if row.get("is_control_domain") == "false" and row.get("is_a_template") == "false"
               and row.get("is_a_snapshot") == "false"]
    assert len(vm_rows) == 2
    vm_rows[0].set("memory__static_max", "lots")   # malformed int
    del vm_rows[1].attrib["uuid"]                   # missing field
    bad = tmp_path / "broken.xml"
    tree.write(bad)
    result = result_from_dump(bad, "broken")
    assert result.status == "partial"
    assert "memory_static_max" in (result.error or "") and "no uuid" in (result.error or "")
    assert len(result.inventory.vms) == 1  # the one without a uuid is left out, the other kept
    assert result.inventory.vms[0].memory_bytes is None and result.inventory.vms[0].name == vm_rows[0].get("name__label")
    with pytest.raises(ConfigError, match="not a pool database dump"):
        result_from_dump(tmp_path / "missing.xml", "x")


def test_reverse_sets_are_computed_for_old_dumps() -> None:
    view = to_api(load_dump(real_dump("updatesState.xml")))  # XenServer 5.5: no VM.VBDs stored
    vm = next(v for v in view.records["VM"].values() if not v["is_control_domain"] and not v["is_a_template"])
    assert vm["VBDs"] and all(view.records["VBD"][r]["VM"] in view.records["VM"] for r in vm["VBDs"])


def test_reverse_sets_of_a_synthetic_dump_written_the_old_way() -> None:
    """The 5.x layout (only VBD.VM, no VM.VBDs) made from a synthetic dump: the sets come back as they were."""
    text = generate(2, 6, "xcp-ng-8.3", seed="old-layout")
    whole = to_api(load_dump(text)).records
    root = ET.fromstring(text)
    for table, field in (("VM", "VBDs"), ("VM", "VIFs"), ("SR", "PBDs")):
        for row in root.find(f"table[@name='{table}']").findall("row"):  # type: ignore[union-attr]
            row.attrib.pop(field, None)
    old = to_api(load_dump(ET.tostring(root, encoding="unicode"))).records
    for table, field in (("VM", "VBDs"), ("VM", "VIFs"), ("SR", "PBDs")):
        assert {ref: sorted(r[field]) for ref, r in old[table].items()} == {
            ref: sorted(r[field]) for ref, r in whole[table].items()}
    assert any(r["VBDs"] for r in old["VM"].values())


def test_target_config_checks(tmp_path: Path) -> None:
    from inventory.config import parse_config
    with pytest.raises(ConfigError, match="give password_env or password_file"):
        parse_config({"xenserver": [{"name": "p", "url": "https://x"}]}, tmp_path / "c.toml",
                     {"xenserver": XenTarget})
    with pytest.raises(ValueError, match="must look like"):
        XenTarget(name="p", url="xen-master", password=Secret("env", "X"))
    with pytest.raises(ValueError, match="SHA-256"):
        XenTarget(name="p", url="https://x", password=Secret("env", "X"), fingerprint="abc")
    pinned = XenTarget(name="p", url="https://x", password=Secret("env", "X"), fingerprint="AB:" * 31 + "AB")
    assert pinned.fingerprint == "ab" * 32


def test_scan_and_import_from_the_command_line_never_leak_the_password(server_for: Any, tmp_path: Path) -> None:
    from tests.conftest import run_tool
    secret = "Xen-Pa55word-never-shown"
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(2, 6, "xcp-ng-8.3", seed="leak"))
    server = server_for(dump, password=secret)
    password_file = tmp_path / "pool.secret"
    password_file.write_text(secret + "\n")
    password_file.chmod(0o600)
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "inv.db"\n[[xenserver]]\nname = "pool1"\nurl = "{server.url}"\n'
                      f'username = "root"\npassword_file = "{password_file}"\n'
                      f'[[xenserver]]\nname = "pool2"\nurl = "{server.url}"\npassword_env = "CSI_WRONG"\n')
    config.chmod(0o600)
    log = tmp_path / "scan.log"
    scan = run_tool("--debug", "--log-file", str(log), "scan", "--config", str(config), env={"CSI_WRONG": "nope"})
    assert scan.returncode == 3, scan.stderr  # pool2's password is wrong: partial
    assert "SESSION_AUTHENTICATION_FAILED" in scan.stdout + scan.stderr
    imported = run_tool("import", "xapi-dump", str(dump), "--config", str(config))
    assert imported.returncode == 0, imported.stderr
    exports = [run_tool("export", "--config", str(config), "--scan", str(n), "--table", t, "--format", "json").stdout
               for n in (1, 2) for t in ("hosts", "vms", "targets", "endpoints", "clusters")]
    assert '"pool1"' in exports[2] and '"dump:pool"' in exports[7]
    database = b"".join(p.read_bytes() for p in tmp_path.glob("inv.db*"))
    assert secret.encode() not in database and b"nope" not in database
    for chunk in [scan.stdout, scan.stderr, imported.stdout, log.read_text(), *exports]:
        assert secret not in chunk
        assert "nope" not in chunk
    # the live scan and the dump import agree on what the pool holds
    live, dump = exports[1], exports[6]
    assert sorted(v["key"] for v in json.loads(live)) == sorted(v["key"] for v in json.loads(dump))


class _Echoing:
    """A XAPI that answers the login with the call it was given, password and all: as an INTERNAL_ERROR's
    description, or as an XML-RPC fault."""

    def __init__(self, records: Any, fault: bool) -> None:
        from fixtures.xapi.server import Xapi
        self.api, self.fault = Xapi(records), fault

    def dispatch(self, method: str, params: tuple[Any, ...]) -> dict[str, Any]:
        if method != "session.login_with_password":
            return self.api.dispatch(method, params)
        said = f"session.login_with_password[{', '.join(map(str, params))}]"
        if self.fault:
            raise xmlrpc.client.Fault(1, f"cannot serve {said}")
        return {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", f"Failure in {said}"]}


@pytest.mark.parametrize("fault", [False, True])
def test_a_password_the_server_echoes_is_never_kept_or_said(small_pool: Path, monkeypatch: pytest.MonkeyPatch,
                                                            fault: bool) -> None:
    secret = "Hunter2-echoed-back"
    monkeypatch.setenv(PASSWORD_ENV, secret)
    echoing = _Echoing(to_api(load_dump(small_pool)).records, fault)
    result, _ = _collected_through(echoing.api, echoing.dispatch)
    assert result.status == "failed"
    said = [result.error or "", *(e.error or "" for e in result.endpoints)]
    assert all(secret not in text and secret[:8] not in text for text in said), said
    assert "***" in (result.error or ""), result.error  # what the server said is kept, the secret blanked


class _Dispatch:
    def __init__(self, dispatch: Any) -> None:
        self._dispatch_fn = dispatch

    def _dispatch(self, method: str, params: tuple[Any, ...]) -> Any:
        return self._dispatch_fn(method, params)


def _collected_through(api: Any, dispatch: Any) -> tuple[Any, str]:
    """The pool read from a fixture server whose every call goes through ``dispatch``; its result and URL."""
    from fixtures.xapi.server import XapiServer
    server = XapiServer(api)
    server.server.register_instance(_Dispatch(dispatch))
    server.start()
    try:
        return XenServerCollector(target(server.url)).collect(), server.url
    finally:
        server.stop()


def test_an_echoed_password_reaches_no_output_log_recording_export_or_report(small_pool: Path, tmp_path: Path) -> None:
    from fixtures.xapi.server import XapiServer
    from tests.conftest import run_tool
    secret = "Hunter2-echoed-everywhere"
    echoing = _Echoing(to_api(load_dump(small_pool)).records, fault=False)
    server = XapiServer(echoing.api)
    server.server.register_instance(_Dispatch(echoing.dispatch))
    server.start()
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\npath = "inv.db"\n[[xenserver]]\nname = "pool1"\nurl = "{server.url}"\n'
                      'password_env = "CSI_ECHOED"\n')
    config.chmod(0o600)
    log = tmp_path / "scan.log"
    try:
        scan = run_tool("--log-file", str(log), "scan", "--config", str(config), "--record", str(tmp_path / "rec"),
                        env={"CSI_ECHOED": secret})
    finally:
        server.stop()
    assert scan.returncode == 3 and "INTERNAL_ERROR" in scan.stdout + scan.stderr, scan.stdout + scan.stderr
    said = [scan.stdout, scan.stderr, log.read_text()]
    said += [run_tool("export", "--config", str(config), "--table", table, "--format", "json").stdout
             for table in ("targets", "endpoints")]
    report = run_tool("report", "--config", str(config), "--format", "html", "--output", str(tmp_path / "r.html"))
    said += [report.stdout, report.stderr]
    files = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "c.toml"]
    assert any(b"INTERNAL_ERROR" in f for f in files)  # what the server said is kept, blanked
    assert not [text for text in said if secret in text] and not [f for f in files if secret.encode() in f]


def test_an_answer_that_is_not_a_map_of_records_names_the_pool(small_pool: Path) -> None:
    from fixtures.xapi.server import Xapi
    api = Xapi(to_api(load_dump(small_pool)).records)

    def dispatch(method: str, params: tuple[Any, ...]) -> Any:
        answer = api.dispatch(method, params)
        return {"Status": "Success", "Value": ["not", "a", "map"]} if method == "VM.get_all_records" else answer
    result, url = _collected_through(api, dispatch)
    assert result.status == "failed"
    assert result.error == f"xenapi {url}: VM.get_all_records did not return a map of records", result.error


def test_the_client_closes_every_connection_it_opened(server_for: Any, small_pool: Path, tmp_path: Path) -> None:
    """XAPI keeps a connection open for the next call until the client closes it (http_svr.ml): a client that left
    it to the garbage collector would hold one of the pool's connections per scan until then."""
    import gc
    import warnings
    cert, key = self_signed(tmp_path / "tls", addresses=("127.0.0.1", "127.0.0.2", "127.0.0.3"))
    master = server_for(small_pool, host="127.0.0.2", tls=(cert, key))
    member = server_for(small_pool, host="127.0.0.3", port=master.port, member_of="127.0.0.2", tls=(cert, key))
    for server in (server_for(small_pool), server_for(small_pool, tls=(cert, key)), member):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", ResourceWarning)
            result = XenServerCollector(target(server.url, ca_file=cert)).collect()
            gc.collect()
        assert result.status == "ok", result.error
        unclosed = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
        assert not unclosed, unclosed


def test_a_stopped_fixture_server_answers_no_kept_connection(server_for: Any, small_pool: Path) -> None:
    server = server_for(small_pool)
    proxy = xmlrpc.client.ServerProxy(server.url)
    assert proxy.session.login_with_password("root", "xenroot", "2.0", "test")["Status"] == "Success"
    server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        proxy.session.login_with_password("root", "xenroot", "2.0", "test")
    proxy("close")()
