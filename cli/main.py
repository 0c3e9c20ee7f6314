"""cs-inventory's command line: a thin typer layer over the ``inventory`` library."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.table import Table

import inventory
from inventory import lifetime
from cli.literal import LiteralConsole, reader_gone
from cli.output import output as _output

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERNAL, EXIT_BUSY = 0, 1, 2, 3, 4, 5
RECONCILE_FORMATS = ("table", "json", "csv")
DIFF_FORMATS = ("table", "json", "csv", "ndjson")
DIFF_TABLE_ROWS = 200  # changes a diff's table shows unless --limit says otherwise: a screenful or two, laid out fast

app = typer.Typer(
    name="cs-inventory", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help=("What is really running on your hypervisors, and is it fit for Apache CloudStack?\n\n"
          "Reads KVM hosts (libvirt + SSH), XenServer pools (XenAPI) and vCenter (pyvmomi) read-only, "
          "stores every scan in SQLite, and reports: an HTML audit, Prometheus metrics, xlsx, CSV/JSON.\n\n"
          "Exit codes: 0 clean; 1 a finding at or above --fail-on (default: error), or an error-severity "
          "difference (reconcile); 2 usage or config error; 3 some targets failed (the scan is partial, or failed "
          "when all did) or the scan was interrupted; 4 internal error; 5 another run holds the "
          "database (lock wait timed out); 141 the reader of the output went away (| head)."),
)
out = LiteralConsole(soft_wrap=True)
if not out.is_terminal:
    out = LiteralConsole(soft_wrap=True, width=200)  # pipes and cron mail: no truncated cells
err = LiteralConsole(stderr=True, soft_wrap=True)
_state = {"debug": False}

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", envvar="CS_INVENTORY_CONFIG",
    help="Config file (TOML). Default: ./cs-inventory.toml.", show_default=False)]
DbOpt = Annotated[Optional[Path], typer.Option(
    "--db", envvar="CS_INVENTORY_DB", help="Database file; overrides [database] path.", show_default=False)]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Print nothing on success (for cron); errors are still printed.")]
ScanOpt = Annotated[Optional[int], typer.Option(
    "--scan", help="Scan id; default: the latest scan that is ok or partial (a failed scan only by its id).")]


def _version(value: bool) -> None:
    if value:
        out.print(f"cs-inventory {inventory.TOOL_VERSION}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors; debug logging.")] = False,
    log_file: Annotated[Optional[Path], typer.Option(
        "--log-file", envvar="CS_INVENTORY_LOG_FILE", help="Append events to this file (created 0600).")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="text or json (one object per line).")] = "text",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug
    if log_format not in ("text", "json"):
        err.print(f"error: --log-format {log_format!r}: use text or json", markup=False)
        raise typer.Exit(EXIT_USAGE)
    with error_boundary():
        inventory.configure_logging(log_file, log_format, debug)


@contextmanager
def error_boundary() -> Iterator[None]:
    """``error: …`` (+ ``hint: …``) for our errors; 'internal error' for anything else."""
    try:
        yield
    except inventory.InventoryError as exc:
        inventory.log_event("command failed", error=exc.one_line(), exit_code=exc.exit_code)
        err.print(f"error: {' '.join(exc.message.split())}", markup=False)
        if exc.hint:
            err.print(f"hint: {exc.hint}", markup=False)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort):
        raise
    except BrokenPipeError:  # the reader went away (`| head`)
        reader_gone()
    except Exception as exc:  # anything else is our bug: say so, briefly unless --debug
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        if _state["debug"]:
            for line in traceback.format_exc().splitlines():
                err.print(line)
        else:
            err.print("hint: run again with --debug for the traceback, and report it", markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None


def _one_of(option: str, value: str, choices: tuple[str, ...]) -> None:
    """A usage error for a value ``option`` does not take, said before anything is read or written."""
    if value not in choices:
        raise inventory.ConfigError(f"unknown {option} {value!r}", hint=f"use {', '.join(choices[:-1])} or {choices[-1]}")


def _no_table_output(fmt: str, output: Path | None, formats: tuple[str, ...]) -> None:
    if fmt == "table" and output is not None:
        written = [f for f in formats if f != "table"]
        raise inventory.ConfigError(f"--output writes {', '.join(written[:-1])} or {written[-1]}, not the table "
                                    f"(which is for the terminal): {output} was not written",
                                    hint=f"add --format {written[-1]} or --format {written[0]}")


def _config(path: Path | None, *, required: bool) -> inventory.Config | None:
    if path is None:
        path = Path(inventory.DEFAULT_CONFIG)
        if not path.exists() and not required:
            return None
    return inventory.load_config(path)


def _db_path(config_path: Path | None, db: Path | None) -> Path:
    if db is not None:
        return db
    config = _config(config_path, required=False)
    return config.database_path if config else Path("cs-inventory.db")


def _reader(config_path: Path | None, db: Path | None) -> inventory.Store:
    """The database opened read-only: show, export, history and diff never change it."""
    return inventory.open_store_readonly(_db_path(config_path, db))


@contextmanager
def _writer(path: Path, lock_timeout: float) -> Iterator[inventory.Store]:
    """The database opened for writing, holding the writer lock (exit 5 after ``lock_timeout``)."""
    with inventory.writer_lock(path, lock_timeout), inventory.open_store(path) as store:
        yield store


def _existing(path: Path) -> Path:
    """check and prune write to a database, but only to one a scan made."""
    if not path.exists():
        raise inventory.StoreError(f"database {path} does not exist", hint="run `cs-inventory scan` first, or pass --db")
    return path


@app.command()
def scan(
    config: ConfigOpt = None,
    db: DbOpt = None,
    only: Annotated[Optional[list[str]], typer.Option(
        "--only", metavar="KIND|TARGET",
        help="Scan only targets of this kind (the name of its [[table]] in the config, e.g. kvm) or the target of this "
             "name; repeat the option for more.")] = None,
    deadline: Annotated[Optional[float], typer.Option(
        "--deadline", help="Give up on targets still running after this many seconds.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing unless something failed.")] = False,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", help="Seconds to wait for another run writing the same database; then exit 5.")] = 60.0,
    cloudstack_version: Annotated[Optional[str], typer.Option(
        "--cloudstack-version", help="CloudStack release the checks apply; overrides [cloudstack] version.")] = None,
    fail_on: Annotated[str, typer.Option(
        "--fail-on", help="Exit 1 when a finding is at least this severe: error, warning, info or never.")] = "error",
    record: Annotated[Optional[Path], typer.Option(
        "--record", help="Also write what each target answered to this folder (one JSON file per target, no "
                         "secrets): attach it to a bug report, or store it again with `import recorded DIR`.",
        show_default=False)] = None,
) -> NoReturn:
    """Collect every configured target and store it as one scan.

    Targets (and the hosts of a KVM target) are read in parallel; one that fails is recorded
    with its reason and the rest go on. Exit code 3 when any target or host failed.
    """
    with error_boundary():
        inventory.exit_code_for([], fail_on)  # a --fail-on it does not take is said before collecting
        if deadline is not None and not (deadline > 0 and math.isfinite(deadline)):
            raise inventory.ConfigError(f"--deadline must be more than 0 seconds, not {deadline:g}",
                                        hint="leave it out for no deadline")
        if cloudstack_version:
            inventory.check_release_shape(cloudstack_version)
        cfg = _config(config, required=True)
        assert cfg is not None
        targets = inventory.select_targets(cfg, only)
        _warn(cfg.warnings + inventory.transport_warnings(targets), quiet)  # of the targets read, not all
        if cloudstack_version or cfg.cloudstack_version:  # a release we do not know is a config error, found early
            inventory.resolve_release(cloudstack_version or cfg.cloudstack_version)
        checks = inventory.CheckSettings(cloudstack_version or cfg.cloudstack_version, cfg.traffic_labels, cfg.settings,
                                         cfg.features)
        with _progress(inventory.endpoint_count(targets), quiet) as on_progress:
            result = inventory.scan(cfg, db_path=db, only=only, deadline_s=deadline, progress=on_progress,
                                    lock_timeout=lock_timeout, record=record, checks=checks)
        findings = result.findings
        code = result.exit_code or (inventory.exit_code_for(findings, fail_on) if findings else 0)
        if not quiet or code:
            _render_scan(result)
            if findings is not None:
                _render_findings(findings, brief=True)
            elif result.checks_skipped:
                out.print(f"checks skipped: {result.checks_skipped}", markup=False)
        lifetime.done_with(result)  # its records: the process ends next
    raise typer.Exit(code)


def _warn(warnings: tuple[str, ...], quiet: bool) -> None:
    for warning in warnings:
        inventory.log_event("config warning", logging.WARNING, warning=warning)  # a filter on warnings sees it
        if not quiet:
            err.print(f"warning: {warning}", markup=False)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Any]:
    if quiet:
        yield None
        return
    if not err.is_terminal:
        def plain(kind: str, event: Any) -> None:
            if kind == "endpoint":
                line = f"{event.target}/{event.endpoint}: {event.status} ({event.duration_s:.1f}s)"
                err.print(line + (f" — {event.error}" if event.error else ""), markup=False)
            else:
                counts = event.inventory.counts()
                line = (f"target {event.name}: {event.status}, {counts['hosts']} hosts, {counts['vms']} VMs "
                        f"({event.duration_s:.1f}s)")
                err.print(line + (f" — {event.error}" if event.error and not event.endpoints else ""), markup=False)
        yield plain
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # on a terminal

    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("scanning", total=total)

        def fancy(kind: str, event: Any) -> None:
            if kind == "endpoint":
                bar.update(task, advance=1, description=f"{event.target}/{event.endpoint}")
            elif not event.endpoints:
                bar.update(task, advance=1, description=event.name)
        yield fancy


def _render_scan(result: inventory.ScanResult) -> None:
    table = Table(title=f"scan {result.scan_id}: {result.status} in {result.duration_s:.1f}s → {result.db_path}")
    for col in ("target", "kind", "status", "hosts", "VMs", "seconds", "calls", "error"):
        table.add_column(col, overflow="fold")
    for t in result.targets:
        counts = t.inventory.counts()
        table.add_row(t.name, t.hypervisor, t.status, str(counts["hosts"]), str(counts["vms"]),
                      f"{t.duration_s:.1f}", str(t.api_calls), t.error or "")
    out.print(table)


@app.command()
def check(
    config: ConfigOpt = None,
    db: DbOpt = None,
    scan_id: ScanOpt = None,
    cloudstack_version: Annotated[Optional[str], typer.Option(
        "--cloudstack-version", help="CloudStack release to check against; overrides [cloudstack] version.")] = None,
    rule_ids: Annotated[Optional[list[str]], typer.Option(
        "--rule", metavar="RULE", help="Run only this rule; repeat the option for more.")] = None,
    skip: Annotated[Optional[list[str]], typer.Option(
        "--skip-rule", metavar="RULE", help="Skip this rule; repeat the option for more.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    fail_on: Annotated[str, typer.Option(
        "--fail-on", help="Exit 1 when a finding is at least this severe: error, warning, info or never.")] = "error",
    explain: Annotated[Optional[str], typer.Option(
        "--explain", metavar="RULE", help="Print what RULE checks, its basis, sources and evidence fields; "
                                          "no scan is read.")] = None,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", help="Seconds to wait for another run writing the same database; then exit 5.")] = 60.0,
) -> NoReturn:
    """Check a stored scan (latest by default) against CloudStack's requirements for a release.

    Findings are stored with the scan (replacing earlier ones, and the release it was checked against) and
    printed grouped by target and cluster; with --rule or --skip-rule they are only printed.
    Exit code 1 when a finding reaches --fail-on (default: error). Severity follows each rule's basis:
    CODE (CloudStack's code enforces it) error, DOC (documented) warning, BP (recommended) and INF
    (cs-inventory's inference) info.
    """
    if explain is not None:
        with error_boundary():
            for line in inventory.explain_rule(explain).splitlines():
                out.print(line)
        raise typer.Exit(EXIT_OK)
    with error_boundary():
        _one_of("--format", fmt, ("table", "json"))
        inventory.exit_code_for([], fail_on)
        if cloudstack_version:
            inventory.check_release_shape(cloudstack_version)
        cfg = _config(config, required=False)
        some = bool(rule_ids or skip)  # a look at some rules: the scan keeps the findings of its whole check
        path = _existing(_db_path(config, db))
        with (inventory.open_store_readonly(path) if some else _writer(path, lock_timeout)) as store:
            resolved = store.resolve_scan(scan_id)
            version = cloudstack_version or (cfg.cloudstack_version if cfg else None) or store.scan(resolved).get(
                "cloudstack_version")
            findings = inventory.run_checks(store, resolved, version, traffic_labels=cfg.traffic_labels if cfg else {},
                                            settings=cfg.settings if cfg else {}, features=cfg.features if cfg else (),
                                            only=rule_ids, skip=skip, keep=not some)
        code = inventory.exit_code_for(findings, fail_on)
        if fmt == "json":
            _print_json({"format": "cs-inventory.findings/1", "scan": resolved, "cloudstack_version": version,
                         "stored": not some, "findings": [f.as_row() for f in findings]})
        else:
            out.print(f"scan {resolved} checked against CloudStack {version}" + (
                " (some rules: not stored; the scan keeps the findings of its whole check)" if some else ""),
                markup=False)
            _render_findings(findings)
    raise typer.Exit(code)


def _render_findings(findings: list[Any], brief: bool = False) -> None:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in inventory.SEVERITIES}
    out.print(f"findings: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} info",
              markup=False)
    if brief:
        if counts["error"] or counts["warning"]:
            out.print("run `cs-inventory check` for the details", markup=False)
        return
    grouped = inventory.group_findings(findings)
    for target, cluster, items in inventory.by_target_and_cluster(grouped):
        table = Table(title=f"{target}" + (f" / cluster {cluster}" if cluster else ""), title_justify="left")
        for col in ("severity", "basis", "rule", "object", "finding", "observed", "expected"):
            table.add_column(col, overflow="fold")
        for f in items:
            table.add_row(f.severity, f.basis or "", f.rule_id, _object(f), f.message, _cell(f.observed),
                          _cell(f.expected))
        out.print(table)
    if any(f.objects for f in grouped):
        out.print("a finding about several objects names the first; every one: `cs-inventory export --table "
                  "finding_objects` (or check --format json)", markup=False)


def _object(finding: Any) -> str:
    """A finding's object by name (its key when it has none); a finding about several, how many."""
    if finding.objects:
        kind = finding.objects[0].object_type
        return f"{len(finding.objects)} {'VMs' if kind == 'vm' else kind + 's'}"
    return str(finding.object_name or finding.object_key)


def _cell(value: str | None, limit: int = 200) -> str:
    """A value in the table, cut where it would fill a screen (a MAC's 500 VMs): all of it is in --format json."""
    text = value or ""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


@app.command()
def reconcile(
    config: ConfigOpt = None,
    db: DbOpt = None,
    scan_id: ScanOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write; default (or -) stdout.")] = None,
) -> NoReturn:
    """Every difference between what CloudStack believes (a [[cloudstack_api]] target) and what the hypervisors run.

    Grouped by kind of difference and by zone / cluster, with both sides' evidence; what could not be
    compared is listed, never reported as missing. Reads the database only. Exit code 1 when a difference
    is an error (like check).
    """
    with error_boundary():
        _one_of("--format", fmt, RECONCILE_FORMATS)
        _no_table_output(fmt, output, RECONCILE_FORMATS)
        with _reader(config, db) as store:
            result = inventory.reconcile(store, scan_id)
        if fmt == "table":
            _render_reconciliation(result)
        else:
            with _output(output, database=_db_path(config, db)) as handle:
                if fmt == "json":
                    handle.write(json.dumps(result.to_dict(), indent=1) + "\n")
                else:
                    inventory.write_rows(iter(result.differences), list(inventory.RECONCILE_COLUMNS), "csv", handle)
    raise typer.Exit(result.exit_code)


def _render_reconciliation(result: Any) -> None:
    sources = ", ".join(f"{t['name']} ({t['status']}, CloudStack {t['cloudstack_version'] or '?'})"
                        for t in result.cloudstack_targets)
    errors = sum(1 for d in result.differences if d["severity"] == "error")
    out.print(f"scan {result.scan_id} reconciled with {sources}: {len(result.differences)} differences, "
              f"{errors} errors", markup=False)
    for line in result.not_compared:
        out.print(f"not compared: {line}", markup=False)
    for kind, where, items in result.groups():
        table = Table(title=f"{kind}" + (f" — {where}" if where else ""), title_justify="left")
        for col in ("severity", "object", "difference", "hypervisor side", "CloudStack side"):
            table.add_column(col, overflow="fold")
        for d in items:
            table.add_row(d["severity"], d["object_key"], d["message"], d["hypervisor_side"] or "",
                          d["cloudstack_side"] or "")
        out.print(table)


@app.command()
def rules(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List the rule catalogue: id, severity, basis, hypervisors, requirement and sources.

    Basis: CODE (CloudStack's code enforces it: error), DOC (documented requirement: warning), BP
    (documented recommendation: info), INF (cs-inventory's inference: info). `check --explain RULE` shows
    one rule in full.
    """
    with error_boundary():
        _one_of("--format", fmt, ("table", "json"))
        catalogue = inventory.select_rules()
        if fmt == "json":
            _print_json([{"id": r.id, "severity": r.severity, "hypervisors": sorted(r.hypervisors),
                          "any_kind": r.is_for_any_kind, "since": r.since, "basis": r.basis,
                          "basis_meaning": inventory.BASES[r.basis].meaning,
                          "requirement": r.requirement, "remediation": r.remediation,
                          "reference": r.reference, "sources": [str(s) for s in r.sources],
                          "evidence": list(r.evidence), "documentation": r.documentation}
                         for r in catalogue])
            return
        table = Table(title=f"{len(catalogue)} rules")
        for col in ("id", "severity", "basis", "hypervisors", "requirement", "sources"):
            table.add_column(col, overflow="fold")
        for r in catalogue:
            table.add_row(r.id, r.severity, r.basis, r.hypervisors_shown, r.requirement,
                          "\n".join(str(s) for s in r.sources))
        out.print(table)


@app.command()
def show(
    config: ConfigOpt = None,
    db: DbOpt = None,
    scan_id: ScanOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Summarise a stored scan: per target and cluster, hosts, VMs by CloudStack role, failures."""
    with error_boundary():
        _one_of("--format", fmt, ("table", "json"))  # said before the database is read
        with _reader(config, db) as store:
            summary = inventory.scan_summary(store, store.resolve_scan(scan_id))
        if fmt == "json":
            _print_json(summary)
            return
        _render_summary(summary)


def _render_summary(summary: dict[str, Any]) -> None:
    scan = summary["scan"]
    table = Table(title=f"scan {scan['id']} ({scan['status']}) started {scan['started_at']}: "
                        f"{summary['totals']['hosts']} hosts, {summary['totals']['vms']} VMs")
    for col in ("target", "status", "cluster", "hosts", "VMs", "running", *inventory.ROLES):
        table.add_column(col)
    for target in summary["targets"]:
        rows = target["clusters"] or [{"cluster": "", "hosts": 0, "vms": 0, "running": 0, "roles": {}}]
        for cluster in rows:
            table.add_row(target["name"], target["status"], cluster["cluster"], str(cluster["hosts"]),
                          str(cluster["vms"]), str(cluster["running"]),
                          *(str(cluster["roles"].get(r, 0)) for r in inventory.ROLES))
    out.print(table)
    for failure in summary["failures"]:
        out.print(f"{failure['status']}: {failure['target']}/{failure['endpoint']}: {failure['error']}",
                  markup=False)


EXPORT_FORMATS = ("csv", "json", "ndjson", "xlsx", "prometheus", "datasette-metadata")


@app.command()
def export(
    config: ConfigOpt = None,
    db: DbOpt = None,
    tables: Annotated[Optional[list[str]], typer.Option(
        "--table", "-t", metavar="TABLE",
        help="Table to export (vms, hosts, vm_disks, …; default vms). xlsx: a sheet per table, repeat the option for "
             "more, default every table.", show_default=False)] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="csv, json, ndjson, xlsx, prometheus or datasette-metadata.")] = "csv",
    scan_id: ScanOpt = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="File to write (replaced atomically); default (or -) stdout.")] = None,
    where: Annotated[Optional[str], typer.Option(
        "--where", help="SQL condition on the table's columns, e.g. \"power_state = 'running'\".")] = None,
    columns: Annotated[Optional[str], typer.Option(
        "--columns", help="Comma-separated columns to export, in that order.")] = None,
    where_timeout: Annotated[float, typer.Option(
        "--where-timeout", help="Seconds a --where condition may run before it is stopped.")] = 30.0,
    quiet: QuietOpt = False,
) -> None:
    """Export a scan: one table as CSV, JSON (array of objects) or NDJSON, keys being column names; a workbook
    (xlsx, a sheet per table); Prometheus metrics (node_exporter's textfile format); or Datasette's metadata.json.

    Findings are the `findings` table. Cells a spreadsheet would evaluate are made inert (CSV and xlsx).
    """
    with error_boundary():
        if fmt not in EXPORT_FORMATS:
            raise inventory.ConfigError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(EXPORT_FORMATS)}")
        if fmt in ("xlsx", "prometheus", "datasette-metadata") and (where or columns):
            raise inventory.ConfigError(f"--where and --columns apply to one table: csv, json or ndjson, not {fmt}")
        if fmt in ("prometheus", "datasette-metadata") and tables:
            raise inventory.ConfigError(f"--table does not apply to --format {fmt}: it covers the whole database")
        if fmt == "datasette-metadata":
            _export_metadata(_db_path(config, db), output, quiet)
        elif fmt == "xlsx":
            _export_workbook(config, db, tables, scan_id, output, quiet)
        elif fmt == "prometheus":
            _export_metrics(config, db, scan_id, output, quiet)
        else:
            if tables and len(tables) > 1:
                raise inventory.ConfigError(f"--format {fmt} writes one table", hint="use --format xlsx for several")
            table = tables[0] if tables else "vms"
            chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
            with _reader(config, db) as store, _output(output, database=_db_path(config, db)) as handle:
                count = inventory.export_table(store, table, scan_id, fmt, handle, where=where, columns=chosen,
                                               where_timeout=where_timeout)
            _wrote(output, f"{count} {table} rows", quiet)


def _export_metadata(db_path: Path, output: Path | None, quiet: bool) -> None:
    """Datasette's metadata describes the schema: the database itself is not read (Datasette names it by file)."""
    with _output(output, database=db_path) as handle:
        handle.write(json.dumps(inventory.datasette_metadata(db_path), indent=1, ensure_ascii=False) + "\n")
    _wrote(output, "Datasette metadata", quiet)


def _export_workbook(config: Path | None, db: Path | None, tables: list[str] | None, scan_id: int | None,
                     output: Path | None, quiet: bool) -> None:
    if output is None:
        raise inventory.ConfigError("an xlsx workbook is a binary file", hint="give --output FILE.xlsx")
    with _reader(config, db) as store, _output(output, database=_db_path(config, db), binary=True) as handle:
        counts = inventory.write_workbook(store, scan_id, tables, handle)
    _wrote(output, f"{len(counts)} sheets ({sum(counts.values())} rows)", quiet)


def _export_metrics(config: Path | None, db: Path | None, scan_id: int | None, output: Path | None,
                    quiet: bool) -> None:
    """node_exporter reads the file as its own user: it is made readable by all (counts and names of targets,
    clusters, pools and rules; no host or VM names)."""
    with _reader(config, db) as store:
        text = inventory.metrics_text(store, scan_id)
    with _output(output, database=_db_path(config, db), mode=0o644) as handle:
        handle.write(text)
    _wrote(output, f"{sum(1 for line in text.splitlines() if not line.startswith('#'))} samples", quiet)


def _wrote(output: Path | None, what: str, quiet: bool) -> None:
    if output is not None and not quiet:
        err.print(f"wrote {what} to {output}", markup=False)


@app.command()
def report(
    config: ConfigOpt = None,
    db: DbOpt = None,
    scan_id: ScanOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="html (the only format so far).")] = "html",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="File to write (replaced atomically); default (or -) stdout.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Write the audit report of a scan (latest by default) as one self-contained HTML page, for a mail.

    Coverage (targets and hosts read or failed, with reasons), the estate per zone, target and cluster,
    findings by severity with evidence and remediation, CloudStack differences when the scan has them, drift
    since the previous completed scan, VMs per host and storage use against CloudStack's threshold.
    """
    with error_boundary():
        if fmt != "html":
            raise inventory.ConfigError(f"unknown report format {fmt!r}", hint="use html")
        path = _db_path(config, db)
        with inventory.open_store_readonly(path) as store:
            page = inventory.render_html_report(inventory.audit(store, store.resolve_scan(scan_id)), database=path.name)
        with _output(output, database=path) as handle:
            handle.write(page)
        _wrote(output, "the audit report", quiet)


def _print_json(value: Any) -> None:
    """JSON for programs on stdout: indented, and ASCII only (names' control and direction characters escaped)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=True, default=str) + "\n")


@app.command()
def history(
    config: ConfigOpt = None,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many scans, newest first.")] = 20,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List stored scans: time, status, hosts and VMs, findings by severity, failed targets."""
    with error_boundary():
        _one_of("--format", fmt, ("table", "json"))
        if limit < 1:
            raise inventory.ConfigError(f"--limit must be at least 1, not {limit}", hint="the number of scans to list")
        with _reader(config, db) as store:
            rows = inventory.history(store, limit)
        if fmt == "json":
            _print_json(rows)
            return
        table = Table(title=f"{len(rows)} most recent scans")
        for col in ("id", "started", "status", "hosts", "VMs", "errors", "warnings", "info", "failed targets"):
            table.add_column(col)
        for r in rows:
            table.add_row(str(r["id"]), r["started_at"], r["status"], str(r["hosts"]), str(r["vms"]),
                          str(r["errors"]), str(r["warnings"]), str(r["infos"]), r["targets_failed"] or "")
        out.print(table)


@app.command()
def prune(
    config: ConfigOpt = None,
    db: DbOpt = None,
    keep: Annotated[Optional[int], typer.Option("--keep", help="Keep the N newest scans.")] = None,
    older_than: Annotated[Optional[str], typer.Option(
        "--older-than", help="Delete scans older than e.g. 30d, 12h, 2w.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")] = False,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", help="Seconds to wait for a running scan.")] = 60.0,
    quiet: QuietOpt = False,
) -> None:
    """Delete old scans and reclaim the space. The latest complete scan is never deleted."""
    with error_boundary():
        path = _existing(_db_path(config, db))
        with inventory.writer_lock(path, lock_timeout), inventory.open_store(path) as store:
            result = inventory.prune(store, keep=keep, older_than=older_than, dry_run=dry_run)
        if quiet:
            return
        verb = "would remove" if dry_run else "removed"
        out.print(f"{verb} {len(result.removed)} scans {result.removed or ''}; kept {len(result.kept)}"
                  f" (always kept: {result.protected}); database {result.bytes_before / 2**20:.1f} MiB → "
                  f"{result.bytes_after / 2**20:.1f} MiB", markup=False)


@app.command()
def diff(
    old: Annotated[Optional[int], typer.Argument(help="Older scan id (default: the second newest completed).")] = None,
    new: Annotated[Optional[int], typer.Argument(help="Newer scan id (default: the newest completed).")] = None,
    config: ConfigOpt = None,
    db: DbOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or ndjson.")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write; default (or -) stdout.")] = None,
    include_usage: Annotated[bool, typer.Option(
        "--include-usage", help="Also report free space and disk allocation that changed.")] = False,
    limit: Annotated[int, typer.Option(
        "--limit", "-n", help="The table shows the first N changes, and the first N new and N resolved findings; "
                              "0: every one. csv, json and ndjson always list every one.")] = DIFF_TABLE_ROWS,
) -> None:
    """What changed between two scans: hosts, VMs, disks, NICs, networks, storage; findings new and resolved.

    A target (or KVM host) that failed in either scan is listed as not compared, never as removed. The table
    counts the changes of each kind and shows the first 200 (--limit); --format csv lists every one.
    """
    with error_boundary():
        _one_of("--format", fmt, DIFF_FORMATS)
        _no_table_output(fmt, output, DIFF_FORMATS)
        if limit < 0:
            raise inventory.ConfigError(f"--limit must be 0 (every change) or more, not {limit}",
                                        hint="how many changes the table shows")
        with _reader(config, db) as store:
            result = inventory.diff_scans(store, old, new, include_usage=include_usage)
        if fmt == "table":
            _render_diff(result, limit)
            return
        with _output(output, database=_db_path(config, db)) as handle:
            if fmt == "json":
                handle.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
            else:
                inventory.write_rows(result.rows(), inventory.DIFF_COLUMNS, fmt, handle)


def _render_diff(result: Any, limit: int = DIFF_TABLE_ROWS) -> None:
    """The counts of each kind of change, then the first ``limit`` changes (0: all) and new or resolved findings."""
    out.print(f"scan {result.old} → scan {result.new}", markup=False)
    for skipped in result.not_compared:
        where = f"{skipped['target']}/{skipped['endpoint']}" if skipped["endpoint"] else skipped["target"]
        out.print(f"not compared: {where} ({skipped['why']})", markup=False)
    if not result.changes and not result.findings_new and not result.findings_resolved:
        out.print("no changes", markup=False)
        return
    for table_name, counts in result.summary().items():
        said = ", ".join(f"{number:,} {kind}" for kind, number in counts.items() if number)
        out.print(f"{table_name}: {said}", markup=False)
    if result.findings_new or result.findings_resolved:
        out.print(f"findings: {len(result.findings_new):,} new, {len(result.findings_resolved):,} resolved",
                  markup=False)
    shown = result.changes if not limit else result.changes[:limit]
    if shown:
        table = Table()
        for col in ("table", "change", "target", "key", "name", "what changed"):
            table.add_column(col, overflow="fold")
        for c in shown:
            detail = "; ".join(f"{k}: {o} → {n}" for k, (o, n) in c.fields.items())
            table.add_row(c.table, c.change, c.target, c.key, c.name or "", detail)
        out.print(table)
    more = {"change": len(result.changes) - len(shown)}
    lines: tuple[tuple[str, list[dict[str, Any]], Callable[[dict[str, Any]], str]], ...] = (
        ("new finding", result.findings_new,
         lambda f: f"new finding: {f['severity']} {f['rule_id']} {f['object_key']}: {f['message']}"),
        ("resolved finding", result.findings_resolved,
         lambda f: f"resolved: {f['rule_id']} {f['object_key']}: {f['message']}"))
    for kind, findings, line in lines:
        listed = findings if not limit else findings[:limit]
        more[kind] = len(findings) - len(listed)
        for f in listed:
            out.print(line(f), markup=False)
    left = [f"{number:,} more {kind}{'' if number == 1 else 's'}" for kind, number in more.items() if number]
    if left:
        out.print(f"… {', '.join(left)}: --limit 0 shows every one; --format csv, json or ndjson lists them",
                  markup=False)


@app.command()
def upgrade(
    config: ConfigOpt = None,
    db: DbOpt = None,
    lock_timeout: Annotated[float, typer.Option("--lock-timeout", help="Seconds to wait for a running scan.")] = 60.0,
) -> None:
    """Bring a database written by an older cs-inventory up to this version's schema.

    show, export, history and diff only read, so they refuse an older database and name this
    command; scan, check, prune and import upgrade it on their own. Takes the writer lock like
    prune; a database written by a newer cs-inventory is refused and left as it is.
    """
    with error_boundary():
        path = _db_path(config, db)
        before, after = inventory.upgrade_store(path, lock_timeout)
        out.print(f"{path}: schema {before} → {after}" if before != after else f"{path}: schema {after}, up to date",
                  markup=False)


@app.command("import")
def import_(
    fmt: Annotated[str, typer.Argument(
        metavar="FORMAT", help="recorded: a folder (or file) `scan --record` wrote, any kind; xapi-dump: a "
                               "XenServer/XCP-ng pool database dump (xe pool-dump-database file-name=FILE).")],
    path: Annotated[Path, typer.Argument(metavar="PATH", help="The folder or file to import.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    name: Annotated[Optional[str], typer.Option(
        "--name", help="Target name to store a dump under (a recording keeps its own names).")] = None,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", help="Seconds to wait for another run writing the same database; then exit 5.")] = 60.0,
) -> NoReturn:
    """Store inventory taken elsewhere as a scan, through the same normalisers as a live scan (no credentials).

    Exit code 3 when some values were missing or malformed (they are listed), or a recorded target had failed.
    """
    with error_boundary():
        cfg = _config(config, required=False)
        path_db = db or (cfg.database_path if cfg else Path("cs-inventory.db"))
        result = inventory.import_path(fmt, path, path_db, name=name,
                                       cloudstack_version=cfg.cloudstack_version if cfg else None,
                                       lock_timeout=lock_timeout)
        _render_scan(result)
    raise typer.Exit(result.exit_code)


def main() -> NoReturn:
    """The console script. A run builds millions of long-lived acyclic objects (answers, records) and then exits:
    full collections of the cyclic collector would walk them all again, time after time, for nothing (a quarter
    of a 10,000-VM scan's CPU) — young collections still free short-lived cycles (sessions, threads) — and
    tearing them down one by one at exit takes longer than the checks. So the process ends as soon as the command
    has: its files are closed, its database closed, its output and log flushed; and what a command is done with
    at its end (a scan's records) is kept until then rather than freed (``inventory.lifetime.keep_until_exit``)."""
    gc.set_threshold(700, 10, 1000)
    lifetime.keep_until_exit()
    try:
        app()
        code: Any = 0
    except SystemExit as done:  # how typer ends every command
        code = done.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away (`| head`): nothing more to say to it
            pass
    logging.shutdown()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
