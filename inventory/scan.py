"""Run a scan: every configured target in parallel, each isolated, written as one scan.

This is the only module that imports ``collectors``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

import collectors
from inventory import config as config_module
from inventory import registry
from inventory.config import Config
from inventory.errors import ConfigError, ScanInterrupted
from inventory.model import EndpointResult, TargetConfig, TargetResult
from inventory.normalise import one_line
from inventory.lock import DEFAULT_LOCK_TIMEOUT, writer_lock
from inventory.logs import event
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
    return sum(len(getattr(t, "hosts", ())) or 1 for t in targets)


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
                          hint="add a [[kvm]], [[xenserver]] or [[vmware]] table")
    return targets


def scan(config: Config, *, db_path: Path | None = None, only: Sequence[str] | None = None,
         deadline_s: float | None = None, progress: Progress | None = None,
         lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> ScanResult:
    """Collect every selected target and store the result as one scan.

    A target that fails is recorded with its reason and the scan is ``partial``. SIGTERM or
    Ctrl-C stores what finished, marks the scan ``failed`` and raises ``ScanInterrupted``.
    Only one scan writes to a database at a time: a second waits ``lock_timeout`` seconds,
    then raises ``DatabaseBusy``.
    """
    targets = select_targets(config, only)
    path = db_path or config.database_path
    with writer_lock(path, lock_timeout):
        return _scan_locked(config, targets, path, deadline_s, progress)


def _scan_locked(config: Config, targets: list[TargetConfig], path: Path, deadline_s: float | None,
                 progress: Progress | None) -> ScanResult:
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
        return collector.collect(deadline)

    def done(outcome: collectors.Outcome[TargetConfig, TargetResult]) -> None:
        result = outcome.result or _failed(outcome.item, _why(outcome), outcome.duration_s)
        finished[outcome.item.name] = result
        event("target read", target=result.name, status=result.status, error=result.error,
              duration_s=round(result.duration_s, 3), api_calls=result.api_calls, **result.inventory.counts())
        if progress is not None:
            progress("target", result)

    interrupted: str | None = None
    with _terminate_on_signals() as termination:
        try:
            collectors.run_bounded(targets, collect, workers=TARGET_WORKERS, item_timeout=None,
                                   deadline=deadline, on_done=done)
        except (KeyboardInterrupt, ScanInterrupted) as exc:
            interrupted = "interrupted by Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
        termination.defer()  # a signal during the write lets the write finish first
        results = [finished.get(t.name) or _failed(t, interrupted or "not collected", 0.0) for t in targets]
        status = _status(results, interrupted)
        row = ScanRow(started_at=started_at, finished_at=_now(), status=status, error=interrupted,
                      cloudstack_version=config.cloudstack_version, tool_version=TOOL_VERSION,
                      config_path=str(config.path) if config.path else None)
        scan_id = store.write_scan(row, results)
        store.close()
        interrupted = interrupted or termination.pending
    counts: dict[str, int] = {}
    for result in results:
        for table, count in result.inventory.counts().items():
            counts[table] = counts.get(table, 0) + count
    outcome = ScanResult(scan_id, status, results, time.monotonic() - started, store.path, counts, interrupted)
    event("scan stored", scan_id=scan_id, status=status, error=interrupted,
          duration_s=round(outcome.duration_s, 3), **counts)
    if interrupted:
        raise ScanInterrupted(f"scan {scan_id} {interrupted}; what finished was stored and the scan "
                              f"marked {status}", hint="run the scan again")
    return outcome


def import_xapi_dump(path: Path, db_path: Path, *, name: str | None = None, cloudstack_version: str | None = None,
                     lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> ScanResult:
    """Store a XenServer pool database dump as a scan (an audit without credentials)."""
    from collectors.xenserver import result_from_dump

    started = time.monotonic()
    started_at = _now()
    result = result_from_dump(path, name or f"dump:{path.stem}")
    with writer_lock(db_path, lock_timeout):
        store = open_store(db_path)
        row = ScanRow(started_at=started_at, finished_at=_now(), status=result.status, error=None,
                      cloudstack_version=cloudstack_version, tool_version=TOOL_VERSION, config_path=None)
        scan_id = store.write_scan(row, [result])
        store.close()
    event("dump imported", scan_id=scan_id, file=str(path), status=result.status, **result.inventory.counts())
    return ScanResult(scan_id, result.status, [result], time.monotonic() - started, db_path,
                      result.inventory.counts())


def _status(results: Sequence[TargetResult], interrupted: str | None) -> str:
    if interrupted or all(r.status == "failed" for r in results):
        return "failed"
    return "ok" if all(r.status == "ok" for r in results) else "partial"


def _failed(target: TargetConfig, error: str, duration_s: float) -> TargetResult:
    return TargetResult(name=target.name, hypervisor=kind_of(target), endpoint=target.endpoint,
                        status="failed", error=error, duration_s=duration_s)


def _why(outcome: collectors.Outcome[TargetConfig, TargetResult]) -> str:
    if outcome.timed_out:
        return "scan deadline reached before this target finished"
    return f"internal error {type(outcome.error).__name__}: {one_line(outcome.error, 200)}"


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
