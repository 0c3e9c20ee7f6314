"""cs-inventory's command line: a thin typer layer over the ``inventory`` library."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import inventory

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERNAL = 0, 1, 2, 3, 4

app = typer.Typer(
    name="cs-inventory", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help=("What is really running on your hypervisors, and is it fit for Apache CloudStack?\n\n"
          "Reads KVM hosts (libvirt + SSH), XenServer pools (XenAPI) and vCenter (pyvmomi) read-only, "
          "stores every scan in SQLite, and exports CSV/JSON.\n\n"
          "Exit codes: 0 clean; 1 error-severity findings; 2 usage or config error; 3 some targets "
          "failed (scan partial) or the scan was interrupted; 4 internal error."),
)
out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:
    out = Console(highlight=False, soft_wrap=True, width=200)  # pipes and cron mail: no truncated cells
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}

ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", envvar="CS_INVENTORY_CONFIG",
    help="Config file (TOML). Default: ./cs-inventory.toml.", show_default=False)]
DbOpt = Annotated[Optional[Path], typer.Option(
    "--db", envvar="CS_INVENTORY_DB", help="Database file; overrides [database] path.", show_default=False)]
ScanOpt = Annotated[Optional[int], typer.Option("--scan", help="Scan id; default: the latest stored scan.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"cs-inventory {inventory.TOOL_VERSION}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


@contextmanager
def error_boundary() -> Iterator[None]:
    """``error: …`` (+ ``hint: …``) for our errors; 'internal error' for anything else."""
    try:
        yield
    except inventory.InventoryError as exc:
        err.print(f"error: {' '.join(exc.message.split())}", markup=False)
        if exc.hint:
            err.print(f"hint: {exc.hint}", markup=False)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # anything else is our bug: say so, briefly unless --debug
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        if _state["debug"]:
            err.print(traceback.format_exc(), markup=False)
        else:
            err.print("hint: run again with --debug for the traceback, and report it", markup=False)
        raise typer.Exit(EXIT_INTERNAL) from None


def _config(path: Path | None, *, required: bool) -> inventory.Config | None:
    if path is None:
        path = Path(inventory.DEFAULT_CONFIG)
        if not path.exists() and not required:
            return None
    return inventory.load_config(path)


def _store(config_path: Path | None, db: Path | None) -> inventory.Store:
    if db is None:
        config = _config(config_path, required=False)
        db = config.database_path if config else Path("cs-inventory.db")
    if not db.exists():
        raise inventory.StoreError(f"database {db} does not exist", hint="run `cs-inventory scan` first, or pass --db")
    return inventory.open_store(db)


@app.command()
def scan(
    config: ConfigOpt = None,
    db: DbOpt = None,
    only: Annotated[Optional[list[str]], typer.Option(
        "--only", help="Scan only this hypervisor kind (kvm, xenserver, vmware) or target name; repeatable.")] = None,
    deadline: Annotated[Optional[float], typer.Option(
        "--deadline", help="Give up on targets still running after this many seconds.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing unless something failed.")] = False,
) -> NoReturn:
    """Collect every configured target and store it as one scan.

    Targets (and the hosts of a KVM target) are read in parallel; one that fails is recorded
    with its reason and the rest go on. Exit code 3 when any target or host failed.
    """
    with error_boundary():
        cfg = _config(config, required=True)
        assert cfg is not None
        targets = inventory.select_targets(cfg, only)
        with _progress(inventory.endpoint_count(targets), quiet) as on_progress:
            result = inventory.scan(cfg, db_path=db, only=only, deadline_s=deadline, progress=on_progress)
        if not quiet or result.exit_code:
            _render_scan(result)
    raise typer.Exit(result.exit_code)


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
            elif event.status == "failed" and not event.endpoints:
                err.print(f"{event.name}: failed — {event.error}", markup=False)
        yield plain
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
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
def show(
    config: ConfigOpt = None,
    db: DbOpt = None,
    scan_id: ScanOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Summarise a stored scan: per target and cluster, hosts, VMs by CloudStack role, failures."""
    with error_boundary():
        store = _store(config, db)
        summary = inventory.scan_summary(store, store.resolve_scan(scan_id))
        if fmt == "json":
            out.print_json(json.dumps(summary))
            return
        if fmt != "table":
            raise inventory.ConfigError(f"unknown --format {fmt!r}", hint="use table or json")
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


@app.command()
def export(
    config: ConfigOpt = None,
    db: DbOpt = None,
    table: Annotated[str, typer.Option("--table", "-t", help="Table to export (vms, hosts, vm_disks, …).")] = "vms",
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, json or ndjson.")] = "csv",
    scan_id: ScanOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write; default stdout.")] = None,
) -> None:
    """Export one table of a scan as CSV, JSON (array of objects) or NDJSON; keys are column names."""
    with error_boundary():
        store = _store(config, db)
        if output is None:
            count = inventory.export_table(store, table, scan_id, fmt, sys.stdout)
        else:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", newline="") as handle:
                count = inventory.export_table(store, table, scan_id, fmt, handle)
            err.print(f"wrote {count} {table} rows to {output}", markup=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
