"""Datasette's metadata: generated from the schema declaration and the documented SQL, and served by a real
`datasette` on loopback, which answers a canned query over HTTP."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from inventory import QUERIES, datasette_metadata, open_store_readonly, schema
from tests.conftest import ROOT, run_tool


def test_the_metadata_describes_every_table_view_and_column() -> None:
    metadata = datasette_metadata(Path("/srv/cs-inventory.db"))
    (name, database), = metadata["databases"].items()
    assert name == "cs-inventory"  # Datasette names a database after its file
    tables = database["tables"]
    for table in schema.TABLES:
        assert tables[table.name]["description"] == table.description
        assert tables[table.name]["columns"] == {c.name: c.description for c in table.columns}
        if table.name != "scans":
            assert tables[f"latest_{table.name}"]["columns"] == tables[table.name]["columns"]
    assert tables["_sqlite_migrations"] == {"hidden": True}
    assert list(database["queries"]) == [q.name for q in QUERIES]


def test_the_canned_queries_are_the_documented_sql_and_run(lab_like: Path) -> None:
    page = (ROOT / "docs" / "database.md").read_text()
    with open_store_readonly(lab_like) as store:
        for query in QUERIES:
            assert query.sql + ";" in page
            store.query(query.sql)  # read-only connection: a query that wrote would fail here
        per_host = store.query(next(q.sql for q in QUERIES if q.name == "vms-per-host"))
    assert len(per_host) == 10 and 0 < sum(r["vms"] for r in per_host) <= 31  # VMs with no host count nowhere


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:  # loopback only
        return json.loads(answer.read())


def test_datasette_serves_the_database_with_the_metadata(tmp_path: Path, lab_like: Path) -> None:
    metadata = tmp_path / "metadata.json"
    done = run_tool("export", "--db", str(lab_like), "--format", "datasette-metadata", "--output", str(metadata))
    assert done.returncode == 0, done.stderr
    before = hashlib.sha256(lab_like.read_bytes()).hexdigest()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "datasette", "serve", str(lab_like), "-m", str(metadata),
                               "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(f"{base}/-/versions.json")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "datasette did not start"
                time.sleep(0.2)
        rows = get(f"{base}/lab-like/vms-per-host.json?_shape=array")
        with open_store_readonly(lab_like) as store:
            expected = store.query(QUERIES[0].sql)
        assert rows == expected and len(rows) == 10
        findings = get(f"{base}/lab-like/findings-by-rule.json?_shape=array")
        assert {"rule_id": "reconcile-vm-missing", "severity": "error", "findings": 2, "objects": 2} in findings
        served = get(f"{base}/-/metadata.json")
        assert served["databases"]["lab-like"]["tables"]["vms"]["columns"]["cs_role"].startswith("`user`")
        with urllib.request.urlopen(f"{base}/lab-like/latest_vms", timeout=10) as page:
            html = page.read().decode()
        assert "The newest completed scan&#39;s rows of" in html or "The newest completed scan's rows of" in html
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert hashlib.sha256(lab_like.read_bytes()).hexdigest() == before  # served, never written


def test_agent_not_running_lists_kvm_hosts_whose_agent_was_read_and_is_not_running(lab_like: Path) -> None:
    """XenServer and VMware hosts have no cloudstack-agent (agent_state NULL, as is a KVM host not read): not listed."""
    with open_store_readonly(lab_like) as store:
        rows = store.query(next(q.sql for q in QUERIES if q.name == "agent-not-running"))
    assert [(r["name"], r["agent_state"]) for r in rows] == [("vm", "not-installed")]
