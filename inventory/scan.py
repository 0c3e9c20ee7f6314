"""Run a scan: every configured target in parallel, each isolated, written as one scan.

Collectors are found through ``inventory.registry``; this module runs them.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from inventory import config as config_module
from inventory import lifetime, recording, registry
from inventory.checks import CheckSettings, Finding, run_checks
from inventory.config import Config
from inventory.errors import ConfigError, ScanInterrupted
from inventory.model import EndpointResult, TargetConfig, TargetRead, TargetResult, secret_values
from inventory.normalise import is_unicode, one_line, redact, storable
from inventory.parallel import Outcome, run_bounded
from inventory.lock import DEFAULT_LOCK_TIMEOUT, writer_lock
from inventory.logs import event
from inventory.releases import resolve as resolve_release
from inventory.store import ScanRow, open_store
from inventory.version import TOOL_VERSION

TARGET_WORKERS = 8
Progress = Callable[[str, EndpointResult | TargetResult], None]


@dataclass
class ScanResult:
    scan_id: int
    status: str
    targets: list[TargetResult]
    duration_s: float
    db_path: Path
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: str | None = None
    cloudstack_version: str | None = None  # the config's, else what a cloudstack_api target reported
    findings: list[Finding] | None = None  # one per object, when `scan` was asked to check (``checks``) and did
    checked_against: str | None = None  # the release those findings are for
    checks_skipped: str | None = None  # why the checks asked for did not run

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "ok" else 3


def target_kinds() -> dict[str, type[TargetConfig]]:
    return registry.target_types()


def load_config(path: Path) -> Config:
    """Read and check a config file against every registered collector's target type."""
    return config_module.load_config(path, target_kinds())


def kind_of(target: TargetConfig) -> str:
    return registry.kind_of(target)


def endpoint_count(targets: Sequence[TargetConfig]) -> int:
    """How many endpoints (hosts, pool masters, vCenters) a scan of these targets reads: for progress."""
    return sum(len(registry.collector_class(kind_of(t))(t).endpoints()) for t in targets)


def select_targets(config: Config, only: Sequence[str] | None = None) -> list[TargetConfig]:
    kinds = registry.kinds()
    for name in only or ():
        if name not in kinds and name not in {t.name for t in config.targets}:
            raise ConfigError(f"--only {name!r} is neither a hypervisor kind nor a target name",
                              hint=f"kinds: {', '.join(kinds)}; targets: "
                                   f"{', '.join(t.name for t in config.targets) or 'none'}")
    targets = [t for t in config.targets if not only or kind_of(t) in only or t.name in only]
    if not targets:
        raise ConfigError(f"{config.path}: no targets to scan",
                          hint=f"add a table for a target: {', '.join(f'[[{k}]]' for k in kinds)}")
    return targets


def scan(config: Config, *, db_path: Path | None = None, only: Sequence[str] | None = None,
         deadline_s: float | None = None, progress: Progress | None = None,
         lock_timeout: float = DEFAULT_LOCK_TIMEOUT, record: Path | None = None,
         checks: CheckSettings | None = None) -> ScanResult:
    """Collect every selected target and store the result as one scan.

    A target that fails is recorded with its reason and the scan is ``partial``. SIGTERM or
    Ctrl-C stores what finished, marks the scan ``failed`` and raises ``ScanInterrupted``.
    Only one scan writes to a database at a time: a second waits ``lock_timeout`` seconds,
    then raises ``DatabaseBusy``. ``record`` names a folder to write each target's raw answers to.
    ``checks``: check the scan too (``run_checks`` on the results in memory: the findings stored with it and in
    ``ScanResult.findings``) when a release is known and the scan is not ``failed``.
    """
    targets = select_targets(config, only)
    config_module.check_secrets(config, targets)
    config_module.check_files(config, targets)
    path = db_path or config.database_path
    folder = recording.prepare(record) if record is not None else None
    with writer_lock(path, lock_timeout):
        return _scan_locked(config, targets, path, deadline_s, progress, folder, checks)


def _scan_locked(config: Config, targets: list[TargetConfig], path: Path, deadline_s: float | None,
                 progress: Progress | None, record: Path | None, checks: CheckSettings | None) -> ScanResult:
    store = open_store(path)  # fail on a bad database before collecting
    event("scan started", targets=[t.name for t in targets], database=str(path))
    started_at = _now()
    started = time.monotonic()
    deadline = started + deadline_s if deadline_s else None
    finished: dict[str, TargetResult] = {}

    def endpoint_done(endpoint: EndpointResult) -> None:
        event("endpoint read", target=endpoint.target, endpoint=endpoint.endpoint, status=endpoint.status,
              error=endpoint.error, duration_s=round(endpoint.duration_s, 3), api_calls=endpoint.api_calls)
        if progress is not None:
            progress("endpoint", endpoint)

    def collect(target: TargetConfig) -> TargetResult:
        collector = registry.collector_class(kind_of(target))(target)
        collector.on_endpoint = endpoint_done
        read = collector.read(deadline)
        if record is not None:
            _record(record, read, targets.index(target))
        return collector.result(read)  # the answers are freed here (kept, they would raise the peak)

    def done(outcome: Outcome[TargetConfig, TargetResult]) -> None:
        result = outcome.result or _failed(outcome.item, _why(outcome), outcome.duration_s)
        finished[outcome.item.name] = result
        event("target read", target=result.name, status=result.status, error=result.error,
              duration_s=round(result.duration_s, 3), api_calls=result.api_calls, **result.inventory.counts())
        if progress is not None:
            progress("target", result)

    interrupted: str | None = None
    with _terminate_on_signals() as termination:
        try:
            run_bounded(targets, collect, workers=TARGET_WORKERS, item_timeout=None,
                                   deadline=deadline, on_done=done)
        except (KeyboardInterrupt, ScanInterrupted) as exc:
            interrupted = "interrupted by Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        termination.defer()  # a signal during the write lets the write finish first
        results = [finished.get(t.name) or _failed(t, interrupted or "not collected", 0.0) for t in targets]
        status = _status(results, interrupted)
        version = config.cloudstack_version or reported_version(results)
        row = ScanRow(started_at=started_at, finished_at=_now(), status=status, error=interrupted,
                      cloudstack_version=version, tool_version=TOOL_VERSION,
                      config_path=str(config.path) if config.path else None)
        against, skipped = _checked_release(checks, version, status)
        with lifetime.bulk():  # rows and findings
            scan_id = store.write_scan(row, results)
            findings = None if checks is None or against is None else run_checks(
                store, scan_id, against, traffic_labels=checks.traffic_labels, settings=checks.settings,
                features=checks.features, scanned=results)  # the records in memory: no reading them back
        store.close()
        interrupted = interrupted or termination.pending
    counts = _counts(results)
    outcome = ScanResult(scan_id, status, results, time.monotonic() - started, store.path, counts, interrupted, version,
                         findings, against if findings is not None else None, skipped)
    event("scan stored", scan_id=scan_id, status=status, error=interrupted,
          duration_s=round(outcome.duration_s, 3), **counts)
    if interrupted:
        raise ScanInterrupted(f"scan {scan_id} {interrupted}; what finished was stored and the scan "
                              f"marked {status}", hint="run the scan again")
    return outcome


def _checked_release(checks: CheckSettings | None, version: str | None, status: str) -> tuple[str | None, str | None]:
    """The release a scan is checked against — the one asked for, else the one its CloudStack reported when
    cs-inventory knows it; none for a failed scan — or, when checks were asked for and cannot run, why not."""
    if checks is None:
        return None, None
    if status == "failed":
        return None, "every target failed: nothing to check"
    if checks.cloudstack_version:
        return checks.cloudstack_version, None
    if not version:
        return None, "no [cloudstack] version in the config (or --cloudstack-version)"
    try:
        return resolve_release(version).asked, None
    except ConfigError:
        return None, f"CloudStack {version} (read from its API) is not in cs-inventory's tables; set [cloudstack] version"


IMPORT_FORMATS_HELP = "recorded (a folder `scan --record` wrote), or a kind's own format such as xapi-dump"


def import_formats() -> dict[str, str]:
    """Formats `import` reads, and the kind each belongs to (``recorded`` belongs to every kind)."""
    formats = {"recorded": "any"}
    for kind, cls in registry.collector_classes().items():
        formats.update({name: kind for name in cls.importers})
    return formats


def import_path(fmt: str, path: Path, db_path: Path, *, name: str | None = None,
                cloudstack_version: str | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> ScanResult:
    """Store inventory read elsewhere as a scan: a recording (every kind), or a kind's own file (a XAPI dump)."""
    formats = import_formats()
    if fmt not in formats:
        raise ConfigError(f"import: unknown format {fmt!r}", hint=f"formats: {', '.join(formats)}")
    started, started_at = time.monotonic(), _now()
    if fmt == "recorded":  # JSON: a target's name may hold a lone surrogate, which its records take too
        reads = [read if is_unicode(read.target.name) else dataclasses.replace(
            read, target=dataclasses.replace(read.target, name=storable(read.target.name)))
            for read in recording.load(path)]
    else:
        importer = registry.collector_class(formats[fmt]).importers[fmt]
        reads = [importer(path, storable(name or f"dump:{path.stem}"))]  # a file name's byte not UTF-8: U+FFFD
    results = [registry.collector_class(read.kind)(read.target).result(read) for read in reads]
    status = _status(results, None)
    with writer_lock(db_path, lock_timeout):
        store = open_store(db_path)
        row = ScanRow(started_at=started_at, finished_at=_now(), status=status, error=None,
                      cloudstack_version=cloudstack_version, tool_version=TOOL_VERSION, config_path=None)
        scan_id = store.write_scan(row, results)
        store.close()
    counts = _counts(results)
    event("imported", scan_id=scan_id, format=fmt, file=str(path), status=status, **counts)
    return ScanResult(scan_id, status, results, time.monotonic() - started, db_path, counts)


def import_xapi_dump(path: Path, db_path: Path, *, name: str | None = None, cloudstack_version: str | None = None,
                     lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> ScanResult:
    """Store a XenServer pool database dump as a scan (an audit without credentials)."""
    return import_path("xapi-dump", path, db_path, name=name, cloudstack_version=cloudstack_version,
                       lock_timeout=lock_timeout)


def reported_version(results: Sequence[TargetResult]) -> str | None:
    """The CloudStack version a ``cloudstack_api`` target read (listCapabilities), as ``4.20.1.0``."""
    for result in results:
        version = (result.detail or {}).get("cloudstack_version") if result.status == "ok" else None
        if version:
            return str(version)
    return None


def _counts(results: Sequence[TargetResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        for table, count in result.inventory.counts().items():
            counts[table] = counts.get(table, 0) + count
    return counts


def _status(results: Sequence[TargetResult], interrupted: str | None) -> str:
    if interrupted or all(r.status == "failed" for r in results):
        return "failed"
    return "ok" if all(r.status == "ok" for r in results) else "partial"


def _failed(target: TargetConfig, error: str, duration_s: float) -> TargetResult:
    return TargetResult(name=target.name, hypervisor=kind_of(target), endpoint=target.endpoint,
                        status="failed", error=error, duration_s=duration_s)


def _record(folder: Path, read: TargetRead, position: int) -> None:
    """A recording that cannot be written is logged; the scan itself goes on."""
    try:
        written = recording.write(folder, read, position)
        event("target recorded", target=read.target.name, file=str(written))
    except (OSError, ValueError) as exc:  # a full disk, or an answer JSON cannot hold: the scan goes on without it
        error = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc, 200)
        event("recording failed", logging.WARNING, target=read.target.name, error=error)


def _why(outcome: Outcome[TargetConfig, TargetResult]) -> str:
    if outcome.timed_out:
        return "stopped at the scan's deadline before this target finished (raise --deadline)"
    return redact(f"internal error {type(outcome.error).__name__}: {one_line(outcome.error, 200)}",
                  secret_values(outcome.item))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Termination:
    def __init__(self) -> None:
        self.deferring = False
        self.pending: str | None = None

    def defer(self) -> None:
        self.deferring = True

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        reason = f"terminated by {signal.Signals(signum).name}"
        if self.deferring:
            self.pending = reason
            return
        raise ScanInterrupted(reason)


@contextmanager
def _terminate_on_signals() -> Iterator[_Termination]:
    """SIGTERM (cron, systemd) and SIGINT end collection; a write in progress is finished first."""
    termination = _Termination()
    if threading.current_thread() is not threading.main_thread():
        yield termination
        return
    previous = {sig: signal.signal(sig, termination.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield termination
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
