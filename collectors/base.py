"""What every collector is, and the bounded, deadline-aware parallel runner they share.

A collector gets one configured target and returns a ``TargetResult``: normalised records plus
what failed. It never raises for a target that cannot be read — the failure is the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from inventory.errors import CollectorError
from inventory.model import EndpointResult, TargetConfig, TargetResult

_REGISTRY: dict[str, type[Collector]] = {}

Item = TypeVar("Item")
Result = TypeVar("Result")


class Collector:
    """Base class; a subclass with a ``kind`` registers itself."""

    kind: ClassVar[str] = ""
    cloudstack_name: ClassVar[str] = ""
    Target: ClassVar[type[TargetConfig]] = TargetConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def __init__(self, target: TargetConfig) -> None:
        self.target = target
        self.on_endpoint: Callable[[EndpointResult], None] | None = None  # progress, per host

    def collect(self, deadline: float | None = None) -> TargetResult:
        """Read the target; ``deadline`` is a ``time.monotonic()`` instant to give up at."""
        raise NotImplementedError

    def report(self, endpoint: EndpointResult) -> None:
        """Tell whoever watches (progress bars, logs) that one endpoint is done."""
        if self.on_endpoint is not None:
            self.on_endpoint(endpoint)

    def failed(self, exc: CollectorError, endpoint: str, started: float) -> TargetResult:
        """A target that could not be read: one failed endpoint with the reason, reported, as the result."""
        calls = getattr(exc, "api_calls", 0)
        row = EndpointResult(self.target.name, endpoint, "failed", exc.one_line(), time.monotonic() - started, calls)
        self.report(row)
        return TargetResult(name=self.target.name, hypervisor=self.kind, endpoint=endpoint, status="failed",
                            error=row.error, duration_s=row.duration_s, api_calls=calls, endpoints=[row])


def registry() -> dict[str, type[Collector]]:
    return dict(_REGISTRY)


@dataclass(slots=True)
class Outcome(Generic[Item, Result]):
    item: Item
    result: Result | None
    error: BaseException | None
    timed_out: bool
    duration_s: float


class _Job(Generic[Item, Result]):
    __slots__ = ("item", "started", "result", "error", "done", "finished")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.started = time.monotonic()
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.done = False
        self.finished = self.started


def run_bounded(items: Sequence[Item], work: Callable[[Item], Result], *, workers: int,
                item_timeout: float | None, deadline: float | None = None,
                on_done: Callable[[Outcome[Item, Result]], None] | None = None,
                ) -> list[Outcome[Item, Result]]:
    """Run ``work`` over ``items`` with at most ``workers`` at once, each within ``item_timeout``.

    Each item runs in a daemon thread, so one that hangs (a host that accepts TCP and never
    answers) is abandoned when its time is up instead of blocking the scan or the process exit.
    Results come back in the order of ``items``.
    """
    wake = threading.Event()
    outcomes: dict[int, Outcome[Item, Result]] = {}
    running: dict[int, _Job[Item, Result]] = {}
    next_index = 0

    def run(job: _Job[Item, Result]) -> None:
        try:
            job.result = work(job.item)
        except BaseException as exc:  # reported in the outcome, never lost
            job.error = exc
        job.finished = time.monotonic()
        job.done = True
        wake.set()

    while next_index < len(items) or running:
        while next_index < len(items) and len(running) < max(1, workers):
            job: _Job[Item, Result] = _Job(items[next_index])
            running[next_index] = job
            threading.Thread(target=run, args=(job,), daemon=True,
                             name=f"collect-{next_index}").start()
            next_index += 1
        wake.wait(0.05)
        wake.clear()
        now = time.monotonic()
        for index, job in list(running.items()):
            if job.done:
                outcome = Outcome(job.item, job.result, job.error, False, job.finished - job.started)
            elif (item_timeout is not None and now - job.started > item_timeout) or (
                    deadline is not None and now > deadline):
                outcome = Outcome(job.item, None, None, True, now - job.started)
            else:
                continue
            del running[index]
            outcomes[index] = outcome
            if on_done:
                on_done(outcome)
    return [outcomes[i] for i in range(len(items))]
