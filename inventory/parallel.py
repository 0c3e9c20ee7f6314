"""A bounded, deadline-aware parallel runner: targets of a scan, hosts of a KVM target.

Pure standard library; collectors and the scan both use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


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
