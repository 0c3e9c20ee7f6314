"""The cloudstack_api target with the real `cs` client against the faithful CloudStack API server, and the
reconciliation over scenarios mirrored from the hypervisor fixtures (XAPI pools, libvirt test-driver hosts)
with each difference planted once and a clean control."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.cloudstack_api import CloudStackApiCollector, CloudStackApiTarget, ReadOnlyRefused
from collectors.kvm import KvmTarget
from collectors.xenserver import XenTarget
from fixtures.cloudstack.scenarios import ADMIN_KEY, ADMIN_SECRET, USER_KEY, USER_SECRET, mirror, plant
from fixtures.cloudstack.server import ApiKey, CloudStackApi, RunningServer, Scenario, serve, sign
from fixtures.testdriver import write_cluster
from fixtures.xapi.server import serve_dump
from fixtures.xapi.synth import generate
from fixtures.xapi.tls import self_signed, sha256_fingerprint
from inventory import open_store, open_store_readonly, reconcile, run_checks, scan
from inventory.config import Config
from inventory.model import Inventory, Secret
from inventory.registry import collector_class
from inventory.view import InventoryView
from inventory.releases import resolve
from tests.conftest import run_tool

KEYS = [ApiKey(ADMIN_KEY, ADMIN_SECRET), ApiKey(USER_KEY, USER_SECRET, "user", "bob")]


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CS_SECRET", ADMIN_SECRET)
    monkeypatch.setenv("CS_USER_SECRET", USER_SECRET)
    monkeypatch.setenv("XEN_PASSWORD", "xen-pw")


def target(url: str, **extra: Any) -> CloudStackApiTarget:
    settings: dict[str, Any] = {"name": "mgmt1", "url": url, "api_key": ADMIN_KEY, "secret_key": Secret("env", "CS_SECRET")}
    return CloudStackApiTarget(**{**settings, **extra})


def vms(count: int, *, projects_every: int = 0, account: str = "admin") -> list[dict[str, Any]]:
    return [{"id": f"vm-{i}", "name": f"vm{i}", "instancename": f"i-2-{i}-VM", "state": "Running", "hostid": "h1",
             "account": account, **({"projectid": "p1", "project": "proj", "account": None}
                                    if projects_every and i % projects_every == 0 else {})} for i in range(1, count + 1)]


@pytest.fixture
def server() -> Iterator[Any]:
    started: list[RunningServer] = []

    def start(data: dict[str, Any], **options: Any) -> RunningServer:
        running = serve(Scenario.from_json(data), KEYS, **options)
        started.append(running)
        return running
    yield start
    for running in started:
        running.stop()


# -- the protocol -------------------------------------------------------------------------------------
def test_the_cs_projects_signature_vector() -> None:
    params = {"command": "listVirtualMachines", "listall": "true", "response": "json", "apiKey": "foo"}
    assert sign(params, "bar") == "B0d6hBsZTcFVCiioSxzwKA9Pke8="
    from cs import CloudStack
    signed = dict(params)
    CloudStack("http://127.0.0.1/client/api", "foo", "bar")._sign(signed)
    assert signed["signature"] == "B0d6hBsZTcFVCiioSxzwKA9Pke8="


def test_the_server_checks_like_verify_request() -> None:
    api = CloudStackApi(Scenario.from_json({"zones": [{"id": "z", "name": "zone1"}]}), KEYS)

    def ask(**params: str) -> tuple[int, dict[str, Any]]:
        params = {"apiKey": ADMIN_KEY, "response": "json", **params}
        params["signature"] = sign(params, ADMIN_SECRET)
        return api.handle(params)
    assert ask(command="listZones") == (200, {"listzonesresponse": {"count": 1, "zone": [{"id": "z", "name": "zone1"}]}})
    assert ask(command="listzones")[1]["errorresponse"]["errorcode"] == 401  # the API map is case-sensitive
    status, answer = ask(command="listZones", expires="2001-01-01T00:00:00+0000", signatureVersion="3")
    assert status == 401 and "cserrorcode" not in answer["listzonesresponse"]
    assert ask(command="listZones", page="1")[1]["listzonesresponse"]["errortext"].startswith('"pagesize" parameter')
    assert ask(command="listZones", page="2", pagesize="1") == (200, {"listzonesresponse": {"count": 1}})
    assert ask(command="listHosts") == (200, {"listhostsresponse": {}})  # empty: {}
    bad = {"command": "listZones", "apiKey": ADMIN_KEY, "response": "json", "signature": sign({"command": "listZones"}, "x")}
    assert api.handle(bad)[0] == 401


def test_answers_are_gzipped_for_a_client_that_accepts_it_as_cloudstacks_jetty_does(server: Any) -> None:
    """CloudStack's management server puts a GzipHandler before the API (client/.../ServerDaemon.java
    ``createHandlers``: JSON and XML among the types, GET and POST, level 9; Jetty 9.4's smallest body to compress
    is 32 bytes, and it leaves any answer whose status is not a 2xx one as it is). requests, under the cs client,
    accepts gzip: this is what cs-inventory reads from a real one."""
    import gzip
    import http.client
    from urllib.parse import urlencode, urlsplit
    running = server({"vms": vms(30)})
    parts = urlsplit(running.url)

    def ask(accept: str | None, **params: str) -> tuple[http.client.HTTPResponse, bytes]:
        params = {"apiKey": ADMIN_KEY, "response": "json", **params}
        params["signature"] = sign(params, ADMIN_SECRET)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            connection.request("GET", f"{parts.path}?{urlencode(params)}", headers={"Accept-Encoding": accept} if accept
                               else {})
            answer = connection.getresponse()
            return answer, answer.read()
        finally:
            connection.close()
    plain, text = ask(None, command="listVirtualMachines", listall="true")
    zipped, packed = ask("gzip, deflate", command="listVirtualMachines", listall="true")
    assert plain.getheader("Content-Encoding") is None and zipped.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(packed) == text and json.loads(text)["listvirtualmachinesresponse"]["count"] == 30
    assert zipped.getheader("Vary") == "Accept-Encoding"
    refused, said = ask("gzip", command="listZones", page="1")  # a 431: left as it is
    assert refused.status == 431 and refused.getheader("Content-Encoding") is None and b"pagesize" in said
    empty, nothing = ask("gzip", command="listHosts")  # {"listhostsresponse": {}}: under 32 bytes
    assert empty.getheader("Content-Encoding") is None and json.loads(nothing) == {"listhostsresponse": {}}


@pytest.mark.parametrize(("accepted", "zipped"), [
    ("gzip", True), ("gzip, deflate", True), ("GZIP", True), ("deflate, gzip;q=0.5", True), ("gzip;q=0.001", True),
    ("gzip;q=0, gzip", True), ("gzip ; q = 1", True), ("", False), ("identity", False), ("*", False),
    ("x-gzip", False), ("gzip;q=0", False), ("gzip;Q=0", False), ("gzip ;q = 0", False), ("gzip;q=0.000", False),
    ("gzip;level=1;q=0", True), ("deflate", False)])
def test_gzip_is_accepted_as_jettys_accept_encoding_check_reads_it(accepted: str, zipped: bool) -> None:
    """Jetty 9.4's GzipHandler asks ``HttpField.contains("gzip")``: any item of the list named gzip (in any case,
    spaces ignored) but one whose first parameter is q=0 (only the first is read); ``*`` is not gzip to it."""
    from fixtures.cloudstack.server import _gzips
    assert _gzips(200, b"x" * 40, "application/json; charset=UTF-8", accepted) is zipped


def test_paging_follows_a_small_default_page_size_where_the_cs_client_alone_fails(server: Any) -> None:
    running = server({"vms": vms(23), "settings": {"default.page.size": "5"}})
    from cs import CloudStack, CloudStackApiException
    with pytest.raises(CloudStackApiException) as refused:  # cs pages at a fixed 500: CloudStack answers 431
        CloudStack(running.url, ADMIN_KEY, ADMIN_SECRET).listVirtualMachines(listall=True, fetch_list=True)
    assert refused.value.error["errorcode"] == 431
    result = CloudStackApiCollector(target(running.url)).collect()
    assert result.status == "ok", result.error
    assert len(result.inventory.cloudstack_vms) == 23 and result.detail and result.detail["page_size"] == 5
    assert running.calls["listVirtualMachines"] == 1 + 5 + 5  # cs's refused call, then two passes of 5 pages


def test_the_page_size_is_learnt_from_the_431_when_the_setting_is_not_read(server: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("collectors.cloudstack_api.SETTINGS", frozenset({"control.cidr"}))
    running = server({"vms": vms(7), "settings": {"default.page.size": "3"}})
    result = CloudStackApiCollector(target(running.url, page_size=1000)).collect()
    assert result.status == "ok" and len(result.inventory.cloudstack_vms) == 7 and result.detail
    assert result.detail["page_size"] == 3


@pytest.mark.parametrize("count", [None, 10**6])
def test_a_server_that_repeats_a_page_is_partial_not_silently_short(server: Any, monkeypatch: pytest.MonkeyPatch,
                                                                     count: int | None) -> None:
    """Paging trusts count: a server that answers page 1 whatever page is asked (with the true count, or one far
    too high) must not leave 7 of 12 VMs out unsaid, nor page on until the deadline."""
    running = server({"vms": vms(12), "settings": {"default.page.size": "5"}})
    served = running.api._page

    def always_page_one(items: list[dict[str, Any]], params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        page, total = served(items, {**params, "page": "1"} if "page" in params else params)
        return page, count or total

    monkeypatch.setattr(running.api, "_page", always_page_one)
    result = CloudStackApiCollector(target(running.url, overall_timeout=20)).collect()
    assert result.status == "partial", result.error
    assert "listVirtualMachines: page 2 repeats page 1" in (result.error or ""), result.error
    assert running.calls["listVirtualMachines"] <= 4  # two passes, stopped at their second page


def test_two_passes_find_project_vms_on_old_and_new_releases(server: Any) -> None:
    for old in (False, True):
        running = server({"vms": vms(10, projects_every=3), "release_lists_projects_only": old})
        result = CloudStackApiCollector(target(running.url)).collect()
        assert sorted(v.key for v in result.inventory.cloudstack_vms) == sorted(f"vm-{i}" for i in range(1, 11))


def test_only_list_calls_are_ever_sent(server: Any) -> None:
    running = server({"vms": vms(2)})
    collector = CloudStackApiCollector(target(running.url))
    from collectors.base import Calls
    with collector.connect(running.url, Calls()) as session:
        for command in ("destroyVirtualMachine", "deployVirtualMachine", "updateConfiguration", "listUsers"):
            with pytest.raises(ReadOnlyRefused):
                session.call(command, id="vm-1")
    assert not running.calls and not running.api.writes  # refused before a byte was sent
    collector.collect()
    assert set(running.calls) <= {"listCapabilities", "listConfigurations", "listZones", "listPods", "listClusters",
                                  "listHosts", "listVirtualMachines", "listSystemVms", "listRouters",
                                  "listInternalLoadBalancerVMs", "listVolumes", "listStoragePools",
                                  "listPhysicalNetworks", "listTrafficTypes"}


def test_the_server_runs_on_its_own_from_a_scenario_file(tmp_path: Path) -> None:
    """``python -m fixtures.cloudstack.server``: a scenario file, HTTPS, a key of one's own, latency per request."""
    import subprocess
    import sys
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"vms": vms(4), "settings": {"default.page.size": "3"}, "version": "4.19.2.0"}))
    server = subprocess.Popen([sys.executable, "-m", "fixtures.cloudstack.server", "--scenario", str(scenario),
                               "--port", "0", "--https", str(tmp_path / "tls"), "--latency-ms", "20",
                               "--api-key", ADMIN_KEY, "--secret-key", ADMIN_SECRET],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:") and url.endswith("/client/api")
        result = CloudStackApiCollector(target(url, ca_file=tmp_path / "tls" / "cloudstack.pem")).collect()
    finally:
        server.terminate()
        server.wait(10)
    assert result.status == "ok", result.error
    assert len(result.inventory.cloudstack_vms) == 4 and result.detail and result.detail["page_size"] == 3
    assert result.detail["cloudstack_version"] == "4.19.2.0" and result.duration_s >= 0.02 * result.api_calls


# -- bad input: one line each ---------------------------------------------------------------------------
def test_failures_are_one_line_reasons_that_never_hold_the_key(server: Any, tmp_path: Path) -> None:
    running = server({"vms": vms(3, account="bob"), "settings": {"default.page.size": "500"}})
    cases = {
        "user key": (target(running.url, api_key=USER_KEY, secret_key=Secret("env", "CS_USER_SECRET")),
                     "not a root admin's"),
        "wrong secret": (target(running.url, secret_key=Secret("env", "CS_USER_SECRET")), "signature refused (401)"),
        "the UI's URL": (target(running.url.replace("/client/api", "/client/")),
                         "not CloudStack's API (HTTP 200, text/html"),
        "nothing there": (target("http://127.0.0.1:9/client/api"), "connection refused"),
    }
    for case, (configured, words) in cases.items():
        result = CloudStackApiCollector(configured).collect()
        assert result.status == "failed" and words in (result.error or ""), (case, result.error)
        assert "\n" not in (result.error or "") and ADMIN_KEY not in (result.error or "")
        assert USER_KEY not in (result.error or "") and "signature=" not in (result.error or "")


@pytest.mark.parametrize("code, text", [(430, "Malformed request"), (431, "Unable to execute API command listhosts "
                                                                          "due to missing parameter type"),
                                        (530, "Internal error executing command")])
def test_error_answers_say_their_errortext(code: int, text: str, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    running = server({})
    original = running.api.handle

    def failing(params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params.get("command") == "listHosts":
            return code, {"listhostsresponse": {"uuidList": [], "errorcode": code, "cserrorcode": 9999,
                                                "errortext": text}}
        return original(params)
    monkeypatch.setattr(running.api, "handle", failing)
    result = CloudStackApiCollector(target(running.url)).collect()
    assert result.status == "failed" and f"(listHosts): CloudStack answered {code}: {text}" in (result.error or "")


def test_https_with_a_ca_file_or_a_pinned_fingerprint(server: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls", name="cloudstack")
    running = server({"vms": vms(1)}, tls=(cert, key))
    assert CloudStackApiCollector(target(running.url, ca_file=cert)).collect().status == "ok"
    assert CloudStackApiCollector(target(running.url, fingerprint=sha256_fingerprint(cert))).collect().status == "ok"
    untrusted = CloudStackApiCollector(target(running.url)).collect()
    assert untrusted.status == "failed" and "certificate not trusted" in (untrusted.error or "")
    pinned = CloudStackApiCollector(target(running.url, fingerprint="ab" * 32)).collect()
    assert pinned.status == "failed" and "not the pinned one" in (pinned.error or "")


def test_a_slow_server_is_reported_within_the_timeout(server: Any) -> None:
    running = server({"vms": vms(1)}, latency_s=2.0)
    result = CloudStackApiCollector(target(running.url, timeout=0.5)).collect()
    assert result.status == "failed" and "no answer in time" in (result.error or "")


# -- reconciliation end to end ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[tuple[Any, ...], Inventory]]:
    """A libvirt test-driver KVM cluster and an XCP-ng pool served by the XAPI fixture, read once."""
    folder = tmp_path_factory.mktemp("estate")
    os.environ["XEN_PASSWORD"] = "xen-pw"
    dump = folder / "pool.xml"
    dump.write_text(generate(3, 12, "xcp-ng-8.3", seed="reconcile"))
    xen = serve_dump(dump, password="xen-pw")
    hosts = write_cluster(folder / "td", hosts=3, domains_per_host=25, system_vms=False)  # the pool has the SSVM/CPVM
    targets = (KvmTarget(name="kvm-td", hosts=tuple(h.name for h in hosts), uri=f"test://{folder / 'td'}/{{host}}.xml",
                         ssh_facts=False, cluster="cluster-1"),
               XenTarget(name="xcp-pool", url=xen.url, password=Secret("env", "XEN_PASSWORD")))
    inventory = Inventory()
    for one in targets:
        inventory.extend(collector_class("kvm" if isinstance(one, KvmTarget) else "xenserver")(one).collect().inventory)
    yield targets, inventory
    xen.stop()


def scan_with(estate: tuple[tuple[Any, ...], Inventory], scenario: dict[str, Any], db: Path, **server: Any) -> Any:
    targets, _ = estate
    running = serve(Scenario.from_json(scenario), KEYS, **server)
    try:
        config = Config(path=None, database_path=db, targets=(*targets, target(running.url)))
        return scan(config, db_path=db)
    finally:
        running.stop()


def test_one_cloudstack_has_each_instance_name_once(estate: Any, tmp_path: Path) -> None:
    hosts = write_cluster(tmp_path / "td", hosts=1, domains_per_host=3)  # names the estate has too
    kvm = KvmTarget(name="other", hosts=(hosts[0].name,), uri=f"test://{tmp_path / 'td'}/{{host}}.xml", ssh_facts=False)
    both = Inventory()
    both.extend(estate[1])
    both.extend(collector_class("kvm")(kvm).collect().inventory)
    with pytest.raises(ValueError, match="-VM is on (kvm-td|xcp-pool) and other: one CloudStack has each instance name once"):
        mirror(both)


def test_the_clean_control_has_no_difference(estate: Any, tmp_path: Path) -> None:
    result = scan_with(estate, mirror(estate[1]), tmp_path / "clean.db")
    assert result.status == "ok" and result.cloudstack_version == "4.20.1.0"
    with open_store_readonly(tmp_path / "clean.db") as store:
        reconciled = reconcile(store)
    assert reconciled.differences == [] and reconciled.not_compared == [] and reconciled.exit_code == 0


def test_a_vm_in_transition_is_cloudstacks_work_in_progress_not_a_difference(estate: Any, tmp_path: Path) -> None:
    """CloudStack sets a starting VM's host before it prepares its volumes (minutes from a template), and a
    migrating VM's host to the destination while it runs on the source; its own power-state sync postpones a
    report while a job works on the VM. Running with the same facts is a difference (the control)."""
    scenario = mirror(estate[1])
    hosts = {h["name"]: h for h in scenario["hosts"]}
    stopped = next(v for v in scenario["vms"] if v["state"] == "Stopped" and v["hypervisor"] == "KVM")
    running = next(v for v in scenario["vms"] if v["state"] == "Running" and v["hypervisor"] == "KVM")
    on = next(v for v in estate[1].vms if v.name == stopped["displayname"])
    host_of_stopped = next(h for h in estate[1].hosts if (h.target, h.key) == (on.target, on.host_key))
    other = next(h for name, h in hosts.items() if h["clusterid"] == hosts[running["hostname"]]["clusterid"]
                 and name != running["hostname"])
    for state, expected in (("Running", 2), ("Starting", 0)):
        stopped.update(state=state, hostid=hosts[host_of_stopped.name]["id"], hostname=host_of_stopped.name)
        running.update(state="Running" if expected else "Migrating", hostid=other["id"], hostname=other["name"])
        scan_with(estate, scenario, tmp_path / f"{state}.db")
        with open_store_readonly(tmp_path / f"{state}.db") as store:
            found = {(d["difference"], d["object_key"]) for d in reconcile(store).differences}
        about = {rule for rule, key in found if key in (stopped["id"], running["id"])}
        assert len(about) == expected, (state, found)


def test_each_planted_difference_is_found_once_with_both_sides(estate: Any, tmp_path: Path) -> None:
    planted_scenario, planted = plant(mirror(estate[1]), estate[1])
    scan_with(estate, planted_scenario, tmp_path / "planted.db")
    with open_store_readonly(tmp_path / "planted.db") as store:
        reconciled = reconcile(store)
    found: dict[str, set[str]] = {}
    for difference in reconciled.differences:
        found.setdefault(difference["difference"], set()).add(difference["object_key"])
        assert difference["zone_cluster"].startswith("zone1 / ") or difference["difference"] == \
            "reconcile-vm-unknown-to-cloudstack", difference
    assert set(found) == set(planted)
    for rule_id, key in planted.items():
        assert key in found[rule_id], (rule_id, found[rule_id])
    for rule_id in set(planted) - {"reconcile-vm-unknown-to-cloudstack", "reconcile-storage-leak",
                                   "reconcile-pool-not-attached"}:
        assert found[rule_id] == {planted[rule_id]}, rule_id  # once: nothing else shows the same difference
    assert reconciled.exit_code == 1


def test_a_failed_cloudstack_target_is_not_compared_and_stops_nothing(estate: Any, tmp_path: Path) -> None:
    db = tmp_path / "failed.db"
    targets, _ = estate
    config = Config(path=None, database_path=db, targets=(*targets, target("http://127.0.0.1:9/client/api")))
    result = scan(config, db_path=db)
    assert [t.status for t in result.targets] == ["ok", "ok", "failed"] and result.status == "partial"
    with open_store(db) as store:
        reconciled = reconcile(store, result.scan_id)
        assert reconciled.differences == [] and "CloudStack target mgmt1 failed" in reconciled.not_compared[0]
        findings = run_checks(store, result.scan_id, "4.20")
    assert any(f.rule_id == "unmanaged-vms" for f in findings)  # the fallback, when CloudStack's list is missing


def test_a_live_setting_that_is_not_a_number_leaves_the_default_and_says_so(estate: Any, tmp_path: Path) -> None:
    """CloudStack's API is a source like any other: a value the rules cannot read must not stop the checks."""
    scenario = mirror(estate[1], settings={"storage.overprovisioning.factor": "lots"})
    scan_with(estate, scenario, tmp_path / "live.db")
    with open_store(tmp_path / "live.db") as store:
        view = InventoryView(store, store.resolve_scan(None), resolve("4.20"), {})
        setting = view.setting("storage.overprovisioning.factor")
        assert setting.value == "2" and setting.source == (
            "CloudStack's default; CloudStack API target mgmt1 has 'lots', which is not a number")
        assert run_checks(store, view.scan_id, "4.20")  # the checks ran
        stated = InventoryView(store, view.scan_id, resolve("4.20"), {}, {"storage.overprovisioning.factor": "3"})
        setting = stated.setting("storage.overprovisioning.factor")  # the next source in order: the config's
        assert setting.value == "3" and setting.source == (
            "[cloudstack.settings] in the config; CloudStack API target mgmt1 has 'lots', which is not a number")


def test_live_settings_and_labels_reach_the_rules(estate: Any, tmp_path: Path) -> None:
    scenario = mirror(estate[1], settings={"storage.overprovisioning.factor": "3.5"})
    scan_with(estate, scenario, tmp_path / "live.db")
    with open_store(tmp_path / "live.db") as store:
        view = InventoryView(store, store.resolve_scan(None), resolve("4.20"), {"guest": "from-config"})
        assert view.setting("storage.overprovisioning.factor").value == "3.5"
        assert view.setting("storage.overprovisioning.factor").source == "CloudStack API target mgmt1"
        assert view.setting("control.cidr").value == "169.254.0.0/16"
        assert view.traffic_labels_for("xenserver") == {"management": "xenbr0", "guest": "xenbr0"}
        assert view.traffic_labels_for("kvm")["guest"] == "cloudbr0"
        assert view.traffic_labels_source() == "CloudStack API target mgmt1"
        findings = run_checks(store, view.scan_id, "4.20")
    assert not any(f.rule_id == "unmanaged-vms" for f in findings)


def test_reconcile_from_the_command_line_and_no_key_anywhere(estate: Any, tmp_path: Path) -> None:
    planted_scenario, _ = plant(mirror(estate[1]), estate[1])
    targets, _ = estate
    running = serve(Scenario.from_json(planted_scenario), KEYS)
    config = tmp_path / "cs-inventory.toml"
    secret = tmp_path / "cs.secret"
    secret.write_text(ADMIN_SECRET + "\n")
    secret.chmod(0o600)
    kvm, xen = targets
    config.write_text(f'''[database]
path = "{tmp_path / 'inv.db'}"

[[kvm]]
name = "kvm-td"
cluster = "cluster-1"
hosts = [{", ".join(f'"{h}"' for h in kvm.hosts)}]
uri = "{kvm.uri}"
ssh_facts = false

[[xenserver]]
name = "xcp-pool"
url = "{xen.url}"
password_env = "XEN_PASSWORD"

[[cloudstack_api]]
name = "mgmt1"
url = "{running.url}"
api_key = "{ADMIN_KEY}"
secret_key_file = "{secret}"
page_size = 7
''')
    config.chmod(0o600)
    log = tmp_path / "scan.log"
    try:
        scanned = run_tool("--log-file", str(log), "--debug", "scan", "--config", str(config), "--record",
                           str(tmp_path / "rec"))
    finally:
        running.stop()
    assert scanned.returncode == 1, scanned.stderr  # CloudStack 4.20.1.0 from the API: checks ran, errors found
    assert "checks skipped" not in scanned.stdout
    table = run_tool("reconcile", "--config", str(config))
    assert table.returncode == 1 and "reconcile-vm-not-running — zone1 / " in table.stdout, table.stderr
    as_json = json.loads(run_tool("reconcile", "--config", str(config), "--format", "json").stdout)
    assert as_json["cloudstack"][0]["cloudstack_version"] == "4.20.1.0" and len(as_json["differences"]) >= 10
    # the CloudStack side is what CloudStack shows: for what it has no record of, that it has none (it held the
    # rule's expectation, "listed by CloudStack", which read as if CloudStack listed it)
    sides = {d["difference"]: d["cloudstack_side"] for d in as_json["differences"]}
    assert sides["reconcile-vm-unknown-to-cloudstack"] == "not listed", sides
    assert not any("listed by CloudStack" in side or side == "read by a target" for side in sides.values()), sides
    csv_text = run_tool("reconcile", "--config", str(config), "--format", "csv").stdout
    assert csv_text.splitlines()[0] == ("difference,severity,zone_cluster,object_type,object_key,target,message,"
                                        "hypervisor_side,cloudstack_side")
    everything = [scanned.stdout, scanned.stderr, table.stdout, log.read_text(), (tmp_path / "inv.db").read_bytes().decode(
        "latin-1"), *(p.read_text() for p in (tmp_path / "rec").glob("*.json"))]
    for text in everything:
        assert ADMIN_KEY not in text and ADMIN_SECRET not in text and "signature=" not in text
    recorded = json.loads(next((tmp_path / "rec").glob("*mgmt1.json")).read_text())
    assert recorded["target"]["api_key"] == "(removed)"
    replayed = run_tool("import", "recorded", str(tmp_path / "rec"), "--db", str(tmp_path / "replayed.db"))
    assert replayed.returncode == 0, replayed.stderr


def test_reconcile_without_a_cloudstack_target_says_how_to_add_one(tmp_path: Path) -> None:
    from tests.test_store import result, scan_row
    with open_store(tmp_path / "plain.db") as store:
        store.write_scan(scan_row(), [result()])
    done = run_tool("reconcile", "--db", str(tmp_path / "plain.db"))
    assert done.returncode == 2 and "read no CloudStack API target" in done.stderr and "[[cloudstack_api]]" in done.stderr


# -- images on primary storage that no volume owns (a storage leak attached to no VM) ------------------------
def leaks(targets: tuple[Any, ...], scenario: dict[str, Any], db: Path) -> list[dict[str, Any]]:
    scan_with((targets, Inventory()), scenario, db)
    with open_store_readonly(db) as store:
        return reconcile(store).differences


def test_an_image_on_a_shared_pool_no_volume_names_and_no_vm_uses_is_a_leak(tmp_path: Path) -> None:
    """The test-driver cluster's NFS pool lists every domain's disk (each based on a template's copy) on every host
    and one image no domain uses: listed once for the target, only the unused image is a leak, and none once
    CloudStack lists it as a detached volume."""
    from fixtures.testdriver import ORPHAN_VOLUME, TEMPLATE_COPY
    hosts = write_cluster(tmp_path / "td", hosts=3, domains_per_host=4, system_vms=False, pool_volumes=True)
    kvm = KvmTarget(name="kvm-td", hosts=tuple(h.name for h in hosts), uri=f"test://{tmp_path / 'td'}/{{host}}.xml",
                    ssh_facts=False, cluster="cluster-1")
    read = collector_class("kvm")(kvm).collect()
    images = read.inventory.storage_images
    assert len(images) == len({i.path for i in images}) == 3 * 4 * 2 + 2  # the shared pool's volumes once
    scenario = mirror(read.inventory)
    found = leaks((kvm,), scenario, tmp_path / "leak.db")
    assert [d["difference"] for d in found] == ["reconcile-storage-leak"], found
    assert ORPHAN_VOLUME in found[0]["message"] and "20.0 GiB" in found[0]["message"]
    assert TEMPLATE_COPY not in json.dumps(found)
    pool = next(p for p in scenario["storagepools"] if p["id"] == found[0]["object_key"])
    scenario["volumes"].append({**scenario["volumes"][0], "id": "0d0d0d0d-0000-4000-8000-000000000001",
                                "name": "DATA-detached", "type": "DATADISK", "path": ORPHAN_VOLUME,
                                "storageid": pool["id"], "storage": pool["name"], "virtualmachineid": None,
                                "vmname": None})
    assert leaks((kvm,), scenario, tmp_path / "owned.db") == []
    scenario["volumes"].pop()  # the image is no volume again, but a host of the cluster is read by no target:
    scenario["hosts"].append(dict(scenario["hosts"][0], id="0d0d0d0d-0000-4000-8000-000000000002",
                                  name="kvm-unread", ipaddress="127.0.0.98"))
    found = leaks((kvm,), scenario, tmp_path / "unread.db")  # its VMs' disks may be on the pool: not judged
    assert [d["difference"] for d in found] == ["reconcile-host-not-covered"], found


def test_a_vdi_no_volume_names_and_no_vm_uses_is_a_leak_but_a_template_copy_is_not(tmp_path: Path) -> None:
    """CloudStack keeps a template on an SR as a snapshot VDI named "Template …" (Xenserver625StorageProcessor
    copyTemplateToPrimaryStorage); XAPI's hidden VHD parents are not managed. Only the user VDI attached to
    nothing, that no volume names, is a leak."""
    os.environ["XEN_PASSWORD"] = "xen-pw"
    dump = tmp_path / "pool.xml"
    dump.write_text(generate(2, 4, "xcp-ng-8.3", seed="leak"))
    xen = serve_dump(dump, password="xen-pw")
    try:
        xen_target = XenTarget(name="xcp-pool", url=xen.url, password=Secret("env", "XEN_PASSWORD"))
        scenario = mirror(collector_class("xenserver")(xen_target).collect().inventory)
        vdis = xen.api.records["VDI"]
        attached = next(v for v in vdis.values() if v["type"] == "user" and v["VBDs"])
        for n, extra in enumerate(({"name_label": "forgotten-data"},
                                   {"name_label": "Template 201-2-abc", "is_a_snapshot": True},
                                   {"name_label": "base copy", "managed": False})):
            vdis[f"OpaqueRef:0000000{n}-leak"] = {**attached, "uuid": f"0000000{n}-0000-4000-8000-00000000feed",
                                                  "VBDs": [], **extra}
        found = leaks((xen_target,), scenario, tmp_path / "leak.db")
    finally:
        xen.stop()
    assert [d["difference"] for d in found] == ["reconcile-storage-leak"], found
    assert "forgotten-data" in found[0]["message"] and "00000000-0000-4000-8000-00000000feed" in found[0]["hypervisor_side"]


def test_a_name_that_is_not_unicode_is_stored_marked_and_the_scan_kept(server: Any, tmp_path: Path) -> None:
    """CloudStack's JSON may carry a lone surrogate ("\\ud800", as Java strings can hold one): the VM is kept with
    U+FFFD for it and listed, the target partial, and the scan stored rather than lost in its write."""
    from inventory.store import ScanRow
    listed = vms(3)
    listed[1]["name"] = "tenant\ud800vm"
    running = server({"vms": listed})
    result = CloudStackApiCollector(target(running.url)).collect()
    assert result.status == "partial" and result.error and "not valid Unicode" in result.error
    with open_store(tmp_path / "cs.db") as store:
        scan_id = store.write_scan(ScanRow("t0", "t1", "partial", None, "4.20", "test", None), [result])
        names = [row[0] for row in store.db.execute("SELECT name FROM cloudstack_vms WHERE scan_id = ? ORDER BY key",
                                                    [scan_id])]
    assert names == ["vm1", "tenant\ufffdvm", "vm3"]


def test_an_error_text_that_is_not_unicode_is_printed_and_logged_marked(server: Any, monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """CloudStack's own words (an errortext) may carry a lone surrogate too: the command says it, stores it and
    logs it with U+FFFD, and exits 3 for the failed target, never with a traceback."""
    running = server({"vms": vms(2)})
    original = running.api.handle

    def failing(params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if params.get("command") == "listHosts":
            return 530, {"listhostsresponse": {"uuidList": [], "errorcode": 530, "cserrorcode": 9999,
                                               "errortext": "Unable to find host h\udc80st"}}
        return original(params)
    monkeypatch.setattr(running.api, "handle", failing)
    config = tmp_path / "cs-inventory.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n\n[[cloudstack_api]]\nname = "mgmt1"\n'
                      f'url = "{running.url}"\napi_key = "{ADMIN_KEY}"\nsecret_key_env = "CS_SECRET"\n')
    for options in ((), ("--log-format", "json", "--log-file", str(tmp_path / "log.json"))):
        done = run_tool(*options, "scan", "--config", str(config))
        assert done.returncode == 3 and "Traceback" not in done.stderr and "internal error" not in done.stderr, (
            done.stdout + done.stderr)
        assert "Unable to find host h\ufffdst" in done.stdout + done.stderr
    assert "Unable to find host h\ufffdst" in (tmp_path / "log.json").read_text(encoding="utf-8")
    targets = json.loads(run_tool("export", "--config", str(config), "--table", "targets", "--format", "json",
                                  "--scan", "2").stdout)  # a failed scan: named
    assert "Unable to find host h\ufffdst" in targets[-1]["error"]


def test_a_name_that_is_not_unicode_is_recorded_as_sent_and_replays_the_same(server: Any, tmp_path: Path) -> None:
    """`scan --record` keeps the answer as it was sent, a lone surrogate as JSON's escape (UTF-8 has none for it),
    and importing the recording stores what the live scan stored."""
    from inventory import import_path, load_config
    listed = vms(2)
    listed[0]["name"] = "tenant\ud800vm"
    running = server({"vms": listed})
    config_file = tmp_path / "cs-inventory.toml"
    config_file.write_text(f'[database]\npath = "{tmp_path / "inv.db"}"\n\n[[cloudstack_api]]\nname = "mgmt1"\n'
                           f'url = "{running.url}"\napi_key = "{ADMIN_KEY}"\nsecret_key_env = "CS_SECRET"\n')
    config = load_config(config_file)
    live = scan(config, record=tmp_path / "rec")
    assert live.status == "partial" and [t.status for t in live.targets] == ["partial"]
    (recorded,) = (tmp_path / "rec").iterdir()
    assert "tenant\\ud800vm" in recorded.read_text(encoding="utf-8")
    replayed = import_path("recorded", tmp_path / "rec", config.database_path)
    with open_store_readonly(config.database_path) as store:
        names = [[row[0] for row in store.db.execute("SELECT name FROM cloudstack_vms WHERE scan_id = ? ORDER BY key",
                                                     [scan_id])] for scan_id in (live.scan_id, replayed.scan_id)]
    assert names[0] == names[1] == ["tenant\ufffdvm", "vm2"]


@pytest.mark.parametrize("scanned, listed, matched", [
    (["10.1.0.11", "10.1.0.12"], "10.2.0.21", None),                  # an IP's first number is no short name
    (["kvm01.dc1.example"], "kvm01.dc2.example", None),                # nor another site's host of the same name
    (["kvm01.dc1.example"], "kvm01", "kvm01.dc1.example"),             # a short name, unique: matched
    (["kvm01.example"], "kvm01.example", "kvm01.example"),
    (["kvm01.dc1.example", "kvm01.dc2.example"], "kvm01", None),        # ambiguous: not compared, never the first
])
def test_a_cloudstack_host_is_matched_only_to_the_one_scanned_host_it_names(scanned: list[str], listed: str,
                                                                            matched: str | None) -> None:
    from types import SimpleNamespace

    from inventory.matching import Matching
    from inventory.model import CloudStackHost, Host
    hosts = [Host(key=f"k{i}", target="kvm", cluster_key="c", name=name, address=f"192.0.2.{i}", hypervisor="kvm")
             for i, name in enumerate(scanned)]
    cs = CloudStackHost(key="cs1", target="mgmt", name=listed, address="198.51.100.9")
    view = SimpleNamespace(hosts=hosts, host_nics=[], cloudstack_hosts=[cs],
                           host_by_key={(h.target, h.key): h for h in hosts})
    found = Matching(view).host_of_cs.get(("mgmt", "cs1"))  # type: ignore[arg-type]
    assert (found.name if found else None) == matched


def test_one_host_read_under_two_names_is_one_match() -> None:
    """A KVM host listed twice in a target (by name and by address) is two rows of one machine (its UUID, its key
    again with @address): matched, to the first row, not taken for two hosts."""
    from types import SimpleNamespace

    from inventory.matching import Matching
    from inventory.model import CloudStackHost, Host
    hosts = [Host(key="uuid-1", target="kvm", cluster_key="c", name="kvm01", address="kvm01", hypervisor="kvm",
                  uuid="uuid-1"),
             Host(key="uuid-1@192.0.2.1", target="kvm", cluster_key="c", name="kvm01", address="192.0.2.1",
                  hypervisor="kvm", uuid="uuid-1")]
    cs = CloudStackHost(key="cs1", target="mgmt", name="kvm01", address="198.51.100.9")
    view = SimpleNamespace(hosts=hosts, host_nics=[], cloudstack_hosts=[cs],
                           host_by_key={(h.target, h.key): h for h in hosts})
    found = Matching(view).host_of_cs.get(("mgmt", "cs1"))  # type: ignore[arg-type]
    assert found is not None and found.key == "uuid-1"


def _reconciled(folder: Path, kvm: list[KvmTarget], clouds: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Scan these KVM targets and CloudStack servers (one per scenario), then reconcile: (difference, message)."""
    running = [serve(Scenario.from_json(s), KEYS) for s in clouds]
    db = folder / "r.db"
    try:
        api = [target(r.url, name=f"mgmt{i + 1}") for i, r in enumerate(running)]
        scan(Config(path=None, database_path=db, targets=(*kvm, *api)), db_path=db)
    finally:
        for r in running:
            r.stop()
    with open_store_readonly(db) as store:
        return sorted((d["difference"], d["message"]) for d in reconcile(store).differences)


def _kvm(folder: Path, name: str, prefix: str, pool: str | None = None, **options: Any) -> tuple[KvmTarget, Inventory]:
    """A test-driver cluster of two hosts; ``pool``: its NFS pool's UUID (each cluster has the same one)."""
    hosts = write_cluster(folder / name, hosts=2, domains_per_host=6, prefix=prefix, **options)
    for host in hosts if pool else ():
        host.path.write_text(host.path.read_text().replace("5b2f4e7c-0000-4000-8000-00000000cafe", pool or ""))
    kvm = KvmTarget(name=name, hosts=tuple(h.name for h in hosts), uri=f"test://{folder / name}/{{host}}.xml",
                    ssh_facts=False, cluster=f"cluster-{name}")
    return kvm, collector_class("kvm")(kvm).collect().inventory


def test_two_clouds_in_one_scan_are_each_compared_with_their_own_hosts(tmp_path: Path) -> None:
    """Instance names repeat across two CloudStack installations (ids start low in each): a VM one cloud lists
    must not hide the other's leftover of the same name."""
    (a, inv_a), (b, inv_b) = _kvm(tmp_path, "kvm-a", "kvma"), _kvm(tmp_path, "kvm-b", "kvmb")
    cloud_a, cloud_b = mirror(inv_a, seed="cloud-a", zone="zone-a"), mirror(inv_b, seed="cloud-b", zone="zone-b")
    assert _reconciled(tmp_path / "clean", [a, b], [cloud_a, cloud_b]) == []
    name = next(v.name for v in inv_b.vms if v.name.startswith("i-") and v.power_state == "running")
    assert any(v.name == name for v in inv_a.vms)  # cloud A has a VM of that name too
    forgotten = next(v for v in cloud_b["vms"] if v.get("instancename") == name)
    cloud_b["vms"].remove(forgotten)
    cloud_b["volumes"] = [v for v in cloud_b["volumes"] if v.get("virtualmachineid") != forgotten["id"]]
    found = _reconciled(tmp_path / "leftover", [a, b], [cloud_a, cloud_b])
    assert any(rule == "reconcile-vm-unknown-to-cloudstack" and message.startswith(f"{name} (running) on kvmb")
               for rule, message in found), found


def test_a_vm_running_on_two_targets_of_one_cloud_is_found(tmp_path: Path) -> None:
    """One CloudStack over two KVM clusters read as two targets: a second running copy on the other cluster (a
    disk written twice) is as much a difference as one on the same cluster."""
    (a, inv_a) = _kvm(tmp_path, "kvm-a", "kvma")
    (b, inv_b) = _kvm(tmp_path, "kvm-b", "kvmb", pool="5b2f4e7c-0000-4000-8000-00000000beef", id_base=5000,
                      system_vms=False)  # one CloudStack: one pool of each UUID
    both = Inventory()
    both.extend(inv_a)
    both.extend(inv_b)
    cloud = mirror(both)
    twice = next(v for v in inv_a.vms if v.name.startswith("i-") and v.power_state == "running")
    source = (tmp_path / "kvm-a" / f"{twice.host_key.split(':')[-1]}.xml")
    domain = source.read_text().split(f"<domain type='test'><name>{twice.name}</name>", 1)[1].split("</domain>", 1)[0]
    copy = f"<domain type='test'><name>{twice.name}</name>{domain}</domain>".replace(
        f"<uuid>{twice.uuid}</uuid>", "<uuid>0badc0de-0000-4000-8000-000000000001</uuid>")
    other = next((tmp_path / "kvm-b").glob("*.xml"))
    other.write_text(other.read_text().replace("<domain type='test'>", copy + "<domain type='test'>", 1))
    found = _reconciled(tmp_path / "twice", [a, b], [cloud])
    assert any(rule == "reconcile-vm-wrong-host" and message.startswith(f"{twice.name} runs on kvmb")
               for rule, message in found), found
