"""Prometheus metrics: node_exporter's textfile format as prometheus_client parses it and promtool lints it,
label values escaped, the file replaced atomically, and the documented alerting rules firing on real output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixtures import estate
from inventory import open_store, open_store_readonly
from inventory.metrics import escape_label, metrics_text
from inventory.store import ScanRow
from tests.conftest import ROOT, run_tool

NAME = re.compile(r"^cs_inventory_[a-z][a-z0-9_]*$")
UNITS = ("_seconds", "_bytes", "_ratio")


def promtool() -> str:
    """Debian's promtool, which scripts/install unpacks beside the venv's python."""
    beside = Path(sys.executable).with_name("promtool")
    found = str(beside) if beside.exists() else shutil.which("promtool")
    if found is None:
        if os.environ.get("CS_INVENTORY_CI"):
            pytest.fail("promtool is missing: scripts/install unpacks it into .venv/bin")
        pytest.skip("promtool is not installed (scripts/install unpacks it into .venv/bin)")
    return found


def export(db: Path, out: Path, *args: str) -> str:
    done = run_tool("export", "--db", str(db), "--format", "prometheus", "--output", str(out), *args)
    assert done.returncode == 0, done.stderr
    return out.read_text()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    parsed: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        parsed[family.name] = [(s.labels, s.value) for s in family.samples]
    return parsed


def test_prometheus_client_reads_what_the_export_writes(tmp_path: Path, lab_like: Path) -> None:
    out = tmp_path / "cs_inventory.prom"
    metrics = samples(export(lab_like, out))
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter reads it as its own user
    assert all(NAME.match(name) and not name.endswith("_total") for name in metrics)
    assert metrics["cs_inventory_scan_id"] == [({}, 2)]
    assert sum(v for _, v in metrics["cs_inventory_vms"]) == 31 and sum(v for _, v in metrics["cs_inventory_hosts"]) == 10
    status = {(labels["target"], labels["status"]): v for labels, v in metrics["cs_inventory_target_status"]}
    assert status[("pool-down", "failed")] == 1 and status[("pool-down", "ok")] == 0
    assert status[("testdriver", "partial")] == 1
    endpoints = {(labels["target"], labels["status"]): v for labels, v in metrics["cs_inventory_target_endpoints"]}
    assert endpoints[("testdriver", "failed")] == 1 and endpoints[("testdriver", "ok")] == 3
    assert {labels["target"] for labels, _ in metrics["cs_inventory_target_last_success_timestamp_seconds"]} == {
        "testdriver", "real-libvirtd", "xcp-ng-8.3-pool", "vcsim"}  # pool-down never answered
    roles = {(labels["role"], labels["power_state"]): v for labels, v in metrics["cs_inventory_vms"]
             if labels["target"] == "xcp-ng-8.3-pool"}
    assert roles[("unmanaged", "running")] == 4 and roles[("user", "stopped")] == 2
    findings = {(labels["rule"], labels["severity"]): v for labels, v in metrics["cs_inventory_findings"]}
    assert findings[("storage-capacity", "error")] == 1 and findings[("duplicate-mac", "info")] == 2
    assert findings[("host-memory", "warning")] == 0  # every rule has its series, found something or not
    assert not any(rule.startswith("reconcile-") for rule, _ in findings)
    assert {labels["kind"]: v for labels, v in metrics["cs_inventory_reconciliation_differences"]} == {
        "vm-missing": 2, "power-state": 1}
    assert metrics["cs_inventory_storage_disable_threshold_ratio"] == [({}, 0.85)]
    assert metrics["cs_inventory_last_run_status"] == [({"status": "failed"}, 0), ({"status": "ok"}, 0),
                                                       ({"status": "partial"}, 1)]


def test_label_values_are_escaped(lab_like: Path) -> None:
    assert escape_label('a "b" \\ c\nd') == 'a \\"b\\" \\\\ c\\nd'
    with open_store_readonly(lab_like) as store:
        text = metrics_text(store)
    assert 'cluster="xcp-ng \\"lab\\" pool \\\\ 8.3\\n"' in text
    clusters = {labels.get("cluster") for labels, _ in samples(text)["cs_inventory_hosts"]}
    assert estate.POOL_NAME in clusters  # the parser gives back the name exactly


def test_promtool_accepts_the_metrics(tmp_path: Path, lab_like: Path) -> None:
    text = export(lab_like, tmp_path / "cs_inventory.prom")
    lint = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
    for name in {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}:
        if any(word in name for word in ("timestamp", "duration", "threshold", "capacity", "free")):
            assert name.endswith(UNITS), f"{name}: the unit belongs at the end of the name"


def test_without_reconciliation_the_family_is_empty_and_still_valid(tmp_path: Path) -> None:
    db = estate.build(tmp_path / "plain.db", reconciliation=False)
    text = export(db, tmp_path / "m.prom")
    assert samples(text)["cs_inventory_reconciliation_differences"] == []
    assert subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True).returncode == 0


def test_a_clean_reconciliation_is_0_for_every_kind_not_no_series(tmp_path: Path, lab_like: Path) -> None:
    """'No differences' must read differently from 'not compared': an alert on `> 0` or `absent()` tells them apart."""
    import sqlite3

    from inventory.reconcile import reconcile_rules
    db = tmp_path / "clean.db"
    shutil.copy(lab_like, db)
    with sqlite3.connect(db) as conn:  # scan 2 read CloudStack's API and found no difference
        for table in ("finding_objects", "findings"):
            conn.execute(f"DELETE FROM {table} WHERE rule_id LIKE 'reconcile-%'")
        conn.execute("INSERT INTO targets (scan_id, name, hypervisor, endpoint, status) "
                     "VALUES (2, 'cloudstack', 'cloudstack_api', 'https://cs.example/client/api', 'ok')")
    text = export(db, tmp_path / "m.prom")
    assert {labels["kind"]: v for labels, v in samples(text)["cs_inventory_reconciliation_differences"]} == {
        r.id.removeprefix("reconcile-"): 0 for r in reconcile_rules()}
    plain = estate.build(tmp_path / "plain.db", reconciliation=False)  # not compared: no series, as before
    with open_store_readonly(plain) as store:
        assert samples(metrics_text(store))["cs_inventory_reconciliation_differences"] == []


def test_a_run_that_stored_nothing_shows_beside_the_last_complete_scan(tmp_path: Path, lab_like: Path) -> None:
    db = tmp_path / "copy.db"
    shutil.copy(lab_like, db)
    with open_store(db) as store:
        store.write_scan(ScanRow("2030-01-01T00:00:00+00:00", "2030-01-01T00:10:00+00:00", "failed", "interrupted",
                                 "4.20", "test", None), [])
    metrics = samples(export(db, tmp_path / "m.prom"))
    assert metrics["cs_inventory_scan_id"] == [({}, 2)]  # the inventory is still the last complete scan's
    assert dict((labels["status"], v) for labels, v in metrics["cs_inventory_last_run_status"])["failed"] == 1
    assert metrics["cs_inventory_last_run_timestamp_seconds"] == [({}, 1893456600)]
    older = samples(export(db, tmp_path / "m.prom", "--scan", "1"))
    assert older["cs_inventory_scan_id"] == [({}, 1)] and sum(v for _, v in older["cs_inventory_vms"]) == 28


def test_the_textfile_is_replaced_atomically(tmp_path: Path, lab_like: Path) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    out = folder / "cs_inventory.prom"
    first = export(lab_like, out, "--scan", "1")
    with out.open() as reader:  # node_exporter in the middle of a read
        export(lab_like, out)
        assert reader.read() == first
    assert os.listdir(folder) == ["cs_inventory.prom"]  # no temporary file left where the collector looks
    failed = run_tool("export", "--db", str(lab_like), "--format", "prometheus", "--scan", "7", "--output", str(out))
    assert failed.returncode == 2 and "no scan 7" in failed.stderr and os.listdir(folder) == ["cs_inventory.prom"]
    refused = run_tool("export", "--db", str(lab_like), "--format", "prometheus", "--table", "vms")
    assert refused.returncode == 2 and "--table does not apply" in refused.stderr


def documented_rules() -> str:
    usage = (ROOT / "docs" / "reports.md").read_text()
    block = re.search(r"```yaml\n(# /etc/prometheus/rules/cs-inventory.yml\n.*?)```", usage, re.S)
    assert block is not None, "docs/reports.md lost its alerting rules"
    return block.group(1)


def test_the_documented_alerting_rules_fire_on_the_exported_metrics(tmp_path: Path, lab_like: Path) -> None:
    (tmp_path / "rules.yml").write_text(documented_rules())
    check = subprocess.run([promtool(), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    series = []
    for family in text_string_to_metric_families(export(lab_like, tmp_path / "m.prom")):
        for s in family.samples:
            labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(s.labels.items()))
            series.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value!r}x300"})
    stale = [{"series": "cs_inventory_last_run_timestamp_seconds", "values": "0x300"}]

    def alerts(*expected: tuple[dict[str, str], str]) -> list[dict[str, object]]:
        return [{"exp_labels": labels, "exp_annotations": {"summary": summary}} for labels, summary in expected]

    storage = {"target": "xcp-ng-8.3-pool", "storage": estate.FULL_SR, "key": "14f09833-b96c-5588-bfe6-97a0e17a51c5",
               "kind": "nfs"}
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "alert_rule_test": [
            {"eval_time": "3h", "alertname": "CsInventoryTargetFailed", "exp_alerts": alerts(
                ({"severity": "warning", "target": "pool-down", "hypervisor": "xenserver", "status": "failed"},
                 "cs-inventory could not read pool-down"))},
            {"eval_time": "3h", "alertname": "CsInventoryNotRunning", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "CloudStackRequirementErrors", "exp_alerts": alerts(
                *((({"severity": "warning", "rule": rule}, f"{count} objects fail {rule} (cs-inventory check)"))
                  for rule, count in (("kvm-agent-running", 1), ("kvm-bridge-port-names", 1),
                                      ("storage-capacity", 1))))},
            {"eval_time": "10m", "alertname": "PrimaryStorageAboveCloudStackThreshold", "exp_alerts": alerts(
                ({"severity": "critical", **storage},
                 f"xcp-ng-8.3-pool/{estate.FULL_SR} is 91% full: CloudStack allocates no new volumes on it"))},
            {"eval_time": "10m", "alertname": "CloudStackDiffersFromHypervisors", "exp_alerts": alerts(
                ({"severity": "warning", "kind": "vm-missing"},
                 "2 vm-missing differences between CloudStack and the hypervisors"),
                ({"severity": "warning", "kind": "power-state"},
                 "1 power-state differences between CloudStack and the hypervisors"))},
        ]},
        {"interval": "1m", "input_series": stale, "alert_rule_test": [
            {"eval_time": "4h", "alertname": "CsInventoryNotRunning", "exp_alerts": alerts(
                ({"severity": "warning"}, "no cs-inventory run has finished for 3 hours"))}]},
    ]}
    (tmp_path / "tests.yml").write_text(json.dumps(tests))  # JSON is YAML
    run = subprocess.run([promtool(), "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_storage_used_is_exported_as_the_rule_counts_it_and_the_alert_and_query_use_it(tmp_path: Path,
                                                                                      lab_like: Path) -> None:
    """The alert and the saved query took 1 − free/capacity while the rule and the report count a KVM pool's
    libvirt allocation (as CloudStack's agent does), and the alert fired only above the threshold, not at it."""
    import json as json_module
    import sqlite3
    from inventory.queries import QUERIES
    from inventory.rules.storage import used_share
    exported = {labels["key"]: value for labels, value in samples(export(lab_like, tmp_path / "m.prom"))[
        "cs_inventory_storage_used_ratio"]}
    conn = sqlite3.connect(lab_like)
    rows = conn.execute("SELECT key, capacity_bytes, free_bytes, raw_json FROM storage WHERE scan_id = "
                        "(SELECT MAX(id) FROM scans WHERE status IN ('ok', 'partial')) AND capacity_bytes > 0 "
                        "AND kind NOT IN ('iso', 'removable')").fetchall()
    expected = {key: used_share(capacity, free, json_module.loads(raw) if raw else None)
                for key, capacity, free, raw in rows}
    assert any(json_module.loads(raw or "{}").get("allocation") is not None for *_, raw in rows)  # a KVM pool
    assert {k: round(v, 6) for k, v in exported.items()} == {k: round(v, 6) for k, v in expected.items() if v is not None}
    alert = documented_rules()
    assert "cs_inventory_storage_used_ratio" in alert and ">= on() group_left() " in alert
    query = next(q for q in QUERIES if q.name == "storage-above-85-percent")
    found = {r[1] for r in conn.execute(query.sql)}
    names = dict(conn.execute("SELECT key, name FROM latest_storage"))
    assert found == {names[k] for k, v in expected.items() if v is not None and v >= 0.85 - 1e-9}
