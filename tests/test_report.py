"""The HTML audit report: what it says about a scan, that it needs nothing outside itself, that tenants'
names stay text, and that a real browser (headless Chromium) renders it — with and without scripts."""

from __future__ import annotations

import re
from typing import Any
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fixtures import estate
from fixtures.browser import dump_dom, screenshot
from inventory import audit, open_store_readonly, render_html_report
from inventory.view import InventoryView, Setting
from tests.conftest import run_tool

HOSTILE_SCRIPT = estate.HOSTILE_NAMES[0]


def render(db: Path, scan: int | None = None) -> str:
    with open_store_readonly(db) as store:
        return render_html_report(audit(store, store.resolve_scan(scan)), database=db.name)


class Resources(HTMLParser):
    """Every attribute that could make a browser or mail client fetch something, and every element name."""

    def __init__(self) -> None:
        super().__init__()
        self.fetching: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster", "background", "xlink:href") and value:
                self.fetching.append((tag, name, value))


def figure(dom: str, name: str) -> str:
    match = re.search(rf'id="fig-{name}">([^<]*)<', dom)
    assert match, f"figure {name} is not in the page"
    return match.group(1)


def test_the_audit_of_a_scan(lab_like: Path) -> None:
    with open_store_readonly(lab_like) as store:
        result = audit(store, 2)
    assert result.previous == 1 and result.drift is not None and result.drift.old == 1
    assert result.figures == {
        "targets": 5, "targets_failed": 1, "hosts": 10, "endpoints_failed": 2, "vms": 31, "vms_running": 24,
        "findings_error": 3, "findings_warning": 23, "findings_info": 4, "reconciliation": 3, "changes": 11,
        "storage_above": 1}
    assert {(r.kind, len(r.findings)) for r in result.reconciliation} == {("vm-missing", 2), ("power-state", 1)}
    assert not any(r.rule_id.startswith("reconcile-") for rules in result.findings.values() for r in rules)
    assert [t["name"] for t in result.targets if t["status"] == "failed"] == ["pool-down"]
    assert {f["endpoint"] for f in result.failures} == {"kvm-gone", "https://xen-down.lab.invalid"}
    xen = next(e for e in result.estate if e["target"] == "xcp-ng-8.3-pool")
    assert xen["cluster"] == estate.POOL_NAME and xen["hosts"] == 3 and xen["vms"] == 11
    assert xen["roles"]["unmanaged"] == 4 and xen["states"] == {"running": 9, "stopped": 2}
    assert result.storage[0]["name"] == estate.FULL_SR and result.storage[0]["above"]
    assert result.threshold == Setting("pool.storage.capacity.disablethreshold", "0.85", "CloudStack's default")


def test_the_threshold_is_cloudstacks_setting_as_the_view_gives_it(lab_like: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(InventoryView, "setting", lambda self, name: Setting(name, "0.95", "lab-cloudstack API"))
    page = render(lab_like)
    assert "= <b>0.95</b> (lab-cloudstack API)" in page and "threshold 95 %" in page
    assert 'id="fig-storage">0<' in page  # 91 % is below 95 %


def test_the_page_needs_nothing_outside_itself(lab_like: Path) -> None:
    page = render(lab_like)
    parser = Resources()
    parser.feed(page)
    assert all(value.startswith("#") for _, _, value in parser.fetching), parser.fetching
    assert not {"link", "img", "iframe", "object", "embed", "base", "video", "audio"} & set(parser.tags)
    assert "url(" not in page and "@import" not in page and "@font-face" not in page
    assert parser.tags.count("svg") == 2 and parser.tags.count("script") == 1


def test_tenants_names_are_text(lab_like: Path) -> None:
    page = render(lab_like)
    assert HOSTILE_SCRIPT not in page and "<script>document" not in page
    assert "&lt;script&gt;document.body.setAttribute(&#39;data-pwned&#39;,&#39;1&#39;)&lt;/script&gt;" in page
    assert "{{7*7}}" in page and ">49<" not in page
    assert "bell\\x07vm\\u202egnp.exe\\u200b\\x85" in page  # as the console shows them: not reversing the page
    assert not {"\x07", "\u202e", "\u200b", "\x85"} & set(page)
    assert "xcp-ng &#34;lab&#34; pool \\ 8.3↵" in page


def test_sections_follow_what_the_scan_has(tmp_path: Path, lab_like: Path) -> None:
    page = render(lab_like)
    for section in ("coverage", "findings", "reconciliation", "drift", "estate", "vms-per-host", "storage"):
        assert f'<h2 id="{section}">' in page
    first = render(lab_like, scan=1)
    assert "No earlier completed scan to compare with." in first
    assert 'id="reconciliation"' not in first and "CloudStack differences" not in first  # scan 1 has none
    plain = estate.build(tmp_path / "plain.db", reconciliation=False)
    assert "reconciliation" not in render(plain) and "Scan 1 → scan 2" in render(plain)


def test_chromium_renders_the_report(tmp_path: Path, lab_like: Path) -> None:
    out = tmp_path / "audit.html"
    done = run_tool("report", "--db", str(lab_like), "--format", "html", "--output", str(out))
    assert done.returncode == 0 and "wrote the audit report" in done.stderr, done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    dom = dump_dom(out)
    assert '<html lang="en" class=" js">' in dom  # the page's script ran
    assert len(re.sub(r"<[^>]+>", "", dom).split()) > 1000 and dom.count("<tr>") > 60  # far from blank
    assert figure(dom, "targets") == "4 / 5" and figure(dom, "hosts") == "10" and figure(dom, "vms") == "31"
    assert (figure(dom, "errors"), figure(dom, "warnings"), figure(dom, "info")) == ("3", "23", "4")
    assert figure(dom, "reconciliation") == "3" and figure(dom, "changes") == "11" and figure(dom, "storage") == "1"
    assert "kvm-gone" in dom and "connection timed out after 10s" in dom
    assert "&lt;script&gt;document.body.setAttribute('data-pwned','1')&lt;/script&gt;" in dom
    assert 'data-pwned="1"' not in dom and "{{7*7}}" in dom
    assert dom.count('aria-sort="none"') > 20


def test_tables_sort_when_clicked_in_chromium(tmp_path: Path, lab_like: Path) -> None:
    page = tmp_path / "sorted.html"
    click = ("<script>document.querySelectorAll('#targets th')[5].click();"
             "document.querySelectorAll('#storage-table th')[6].click();</script>")
    page.write_text(render(lab_like).replace("</body>", click + "</body>"))
    dom = dump_dom(page)
    targets = re.search(r'<table class="sortable" id="targets">(.*?)</table>', dom, re.S)
    assert targets is not None
    vms = [int(n) for n in re.findall(r'<tr><td>[^<]*</td><td>\w+</td><td class="status-\w+">\w+</td><td class="n">\d+'
                                      r'</td><td class="n">[^<]*</td><td class="n">(\d+)</td>', targets.group(1))]
    assert vms == sorted(vms) and len(vms) == 5 and vms != [12, 4, 11, 4, 0]  # the scan's order was not sorted
    assert '<th class="n" tabindex="0" title="Sort by VMs" aria-sort="ascending">VMs</th>' in dom
    storage = re.search(r'id="storage-table">(.*?)</table>', dom, re.S)
    assert storage is not None
    used = [float(n) for n in re.findall(r'<td class="n(?: error)?">([\d.]+)</td></tr>', storage.group(1))]
    assert used == sorted(used) and used[-1] == 91.0


def test_readable_where_a_mail_client_strips_scripts_and_styles(tmp_path: Path, lab_like: Path) -> None:
    stripped = re.sub(r"<(script|style)>.*?</\1>", "", render(lab_like), flags=re.S)
    page = tmp_path / "as-mailed.html"
    page.write_text(stripped)
    dom = dump_dom(page)
    assert "js" not in re.search(r"<html[^>]*>", dom).group(0)  # type: ignore[union-attr]
    assert figure(dom, "vms") == "31" and figure(dom, "errors") == "3"
    for heading in ("Coverage", "Findings", "CloudStack differences", "Drift since the previous scan", "Estate",
                    "VMs per host", "Primary storage against CloudStack's threshold"):
        assert f">{heading}</h2>" in dom
    assert "Remediation:" in dom and "NFS primary (CloudStack)" in dom


def test_a_screenshot_shows_the_page(tmp_path: Path, lab_like: Path) -> None:
    page = tmp_path / "audit.html"
    page.write_text(render(lab_like))
    png = screenshot(page, tmp_path / "audit.png", height=900).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1280
    assert len(png) > 50_000  # text, tables and colour: a blank page compresses to a few kB


def test_the_docs_show_a_screenshot_of_the_labs_report() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    png = (docs / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "](report.png)" in (docs / "reports.md").read_text()


def test_the_output_file_is_replaced_whole_or_not_at_all(tmp_path: Path, lab_like: Path) -> None:
    out = tmp_path / "audit.html"
    assert run_tool("report", "--db", str(lab_like), "--scan", "1", "--output", str(out)).returncode == 0
    with out.open() as before:
        assert run_tool("report", "--db", str(lab_like), "--output", str(out)).returncode == 0
        assert "Scan <b>1</b>" in before.read()  # a reader of the old file still has all of it
    assert "Scan <b>2</b>" in out.read_text()
    kept = out.read_bytes()
    failed = run_tool("report", "--db", str(lab_like), "--scan", "9", "--output", str(out))
    assert failed.returncode == 2 and "has no scan 9" in failed.stderr
    assert out.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == ["audit.html"]
    stdout = run_tool("report", "--db", str(lab_like))
    assert stdout.returncode == 0 and stdout.stdout.startswith("<!DOCTYPE html>")


def test_a_database_without_scans_is_refused_clearly(tmp_path: Path, lab_like: Path) -> None:
    shutil.copy(lab_like, tmp_path / "copy.db")
    done = run_tool("report", "--db", str(tmp_path / "missing.db"), "--output", str(tmp_path / "r.html"))
    assert done.returncode == 2 and "does not exist" in done.stderr and not (tmp_path / "r.html").exists()
    bad = run_tool("report", "--db", str(tmp_path / "copy.db"), "--format", "pdf")
    assert bad.returncode == 2 and "unknown report format 'pdf'" in bad.stderr


def test_a_target_that_failed_before_any_host_answered_is_listed_with_its_reason(tmp_path: Path) -> None:
    """A scan deadline or SIGTERM fails a target that has no endpoint row yet: the report must not say every
    target was read, and `show` must give the reason (as it does for a host)."""
    from inventory import open_store
    from inventory.model import EndpointResult, TargetResult
    from inventory.store import ScanRow
    why = "scan deadline reached before this target finished"
    with open_store(tmp_path / "s.db") as store:
        store.write_scan(ScanRow("t0", "t1", "partial", None, "4.20", "test", None), [
            TargetResult(name="pool", hypervisor="xenserver", endpoint="https://xen.example", status="failed",
                         error=why, duration_s=2.0),
            TargetResult(name="kvm", hypervisor="kvm", endpoint="", status="ok", error=None, duration_s=1.0,
                         endpoints=[EndpointResult("kvm", "h1", "ok", None, 1.0, 3)])])
    page = run_tool("report", "--db", str(tmp_path / "s.db"), "--output", str(tmp_path / "r.html"))
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "r.html").read_text()
    assert "Every target and host was read." not in html and why in html
    shown = run_tool("show", "--db", str(tmp_path / "s.db"))
    assert f"failed: pool/https://xen.example: {why}" in shown.stdout, shown.stdout


def test_a_failed_scan_is_not_said_to_be_checked(tmp_path: Path) -> None:
    from inventory import open_store
    from inventory.model import TargetResult
    from inventory.store import ScanRow
    with open_store(tmp_path / "f.db") as store:
        store.write_scan(ScanRow("t0", "t1", "failed", "terminated by SIGTERM", "4.20", "test", None), [
            TargetResult(name="pool", hypervisor="xenserver", endpoint="https://xen.example", status="failed",
                         error="terminated by SIGTERM", duration_s=2.0)])
    done = run_tool("report", "--db", str(tmp_path / "f.db"), "--scan", "1", "--output", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "r.html").read_text()
    assert "checked against CloudStack" not in html and "not checked (the scan failed)" in html
    assert "the scan failed: a scan is checked only when something of it was read" in html


def test_a_redirect_hides_no_target_reason(tmp_path: Path) -> None:
    """A pool member that redirected to its master is a `redirected` row, not a failure that says why the target is
    partial: the target's own reason (malformed values) is still listed."""
    from inventory import open_store
    from inventory.model import EndpointResult, TargetResult
    from inventory.store import ScanRow
    why = "2 malformed values: VM x: VCPUs_at_startup 'lots' is not an integer"
    with open_store(tmp_path / "r.db") as store:
        store.write_scan(ScanRow("t0", "t1", "partial", None, "4.20", "test", None), [
            TargetResult(name="pool", hypervisor="xenserver", endpoint="https://member", status="partial", error=why,
                         duration_s=1.0, endpoints=[
                             EndpointResult("pool", "https://member", "redirected", "followed to the master", 0, 0),
                             EndpointResult("pool", "https://master", "ok", None, 1.0, 22)])])
    shown = run_tool("show", "--db", str(tmp_path / "r.db"))
    assert why in shown.stdout, shown.stdout


def test_the_reports_storage_is_used_as_the_rule_counts_it() -> None:
    """The report said a KVM pool was 86 % used (capacity − available: root's reserved blocks too) where the rule,
    as CloudStack's agent, counts the pool's allocation (81 %); and it put a pool at the threshold below it."""
    from inventory.report import _storage

    class Rows:
        def query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
            return [{"target": "k", "key": "p", "name": "pool", "kind": "netfs", "shared": 1, "capacity_bytes": 100,
                     "free_bytes": 14, "raw_json": '{"allocation": 81}'},
                    {"target": "x", "key": "sr", "name": "sr", "kind": "nfs", "shared": 1, "capacity_bytes": 100,
                     "free_bytes": 15, "raw_json": None}]

    pools = {p["key"]: p for p in _storage(Rows(), 1, 0.85)}  # type: ignore[arg-type]
    assert pools["p"]["used"] == 0.81 and pools["p"]["used_bytes"] == 81 and not pools["p"]["above"]
    assert pools["sr"]["used"] == 0.85 and pools["sr"]["above"]  # CloudStack refuses at >=


def test_noncharacters_in_a_name_are_shown_escaped(tmp_path: Path, lab_like: Path) -> None:
    """U+FFFE and U+FFFF are noncharacters (a parse error in HTML): shown as the other unshown characters are."""
    import sqlite3
    db = tmp_path / "copy.db"
    shutil.copy(lab_like, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE vms SET name = name || ? WHERE name LIKE 'bell%'", ["\ufffe\uffff"])
    page = render(db)
    assert "bell\\x07vm\\u202egnp.exe\\u200b\\x85\\ufffe\\uffff" in page
    assert not {"\ufffe", "\uffff"} & set(page)


def test_the_estate_has_a_column_for_every_role_and_the_cloudstack_side_is_what_cloudstack_shows(
        lab_like: Path, tmp_path: Path) -> None:
    """An internal LB VM was counted in "VMs" and in no role column; the CloudStack column said "listed by
    CloudStack" for a VM CloudStack does not list (the rule's expectation), where `reconcile` says "not listed"."""
    import sqlite3
    from inventory.report import ROLES
    db = tmp_path / "copy.db"
    shutil.copy(lab_like, db)
    with sqlite3.connect(db) as conn:
        number = conn.execute("SELECT finding FROM finding_objects WHERE scan_id = 2 AND object_key = 'i-2-77-VM'"
                              ).fetchone()[0]
        conn.execute("UPDATE findings SET rule_id = 'reconcile-vm-unknown-to-cloudstack', observed = 'running on "
                     "xcp01', expected = 'listed by CloudStack' WHERE scan_id = 2 AND number = ?", [number])
        conn.execute("UPDATE finding_objects SET rule_id = 'reconcile-vm-unknown-to-cloudstack', "
                     "observed = 'running on xcp01', expected = 'listed by CloudStack' WHERE scan_id = 2 AND "
                     "finding = ?", [number])
    page = render(db, 2)
    assert all(f'<th class="n">{role}</th>' in page for role in ROLES), ROLES
    assert "<td>running on xcp01</td><td>not listed</td>" in page
    assert "listed by CloudStack" not in page


def test_a_pool_allocated_past_its_capacity_draws_a_full_bar_not_one_past_the_chart() -> None:
    from inventory.html_report import BAR_W, LABEL_W, storage_chart
    chart = storage_chart([{"target": "k", "name": "p", "kind": "netfs", "capacity_bytes": 100, "used": 1.3,
                            "above": True}], 0.85)
    assert max(width for _, width, _ in chart.bars[0].segments) <= BAR_W and LABEL_W > 0
