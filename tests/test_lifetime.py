"""Bulk data made without the cyclic collector looking at it, and given back to it when the scan ends; objects the
console script is done with kept until it exits."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import weakref
from pathlib import Path

from inventory import lifetime


class Node:
    """An object that can be in a cycle (weakly referable)."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_bulk_phase_pauses_collection_in_every_thread_until_the_last_one_ends() -> None:
    assert gc.isenabled()
    inner_started, outer_may_end = threading.Event(), threading.Event()

    def other_phase() -> None:
        with lifetime.bulk():
            inner_started.set()
            outer_may_end.wait(10)

    try:
        with lifetime.bulk():
            assert not gc.isenabled()
            made = [{"n": n} for n in range(1000)]
            worker = threading.Thread(target=other_phase)
            worker.start()
            inner_started.wait(10)
        assert not gc.isenabled()  # the other thread's phase still runs
        outer_may_end.set()
        worker.join(10)
        assert gc.isenabled()  # the last phase ended: collection resumes
        assert gc.get_freeze_count() >= len(made)  # and what was made is out of the young generations
    finally:
        lifetime.settle()
    assert gc.get_freeze_count() == 0  # back with the old generation


def test_a_cycle_made_in_a_bulk_phase_is_collected_once_settled() -> None:
    with lifetime.bulk():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
    gc.collect()
    assert gone() is not None  # frozen: no collection looks at it
    lifetime.settle()
    gc.collect()
    assert gone() is None


def test_collection_left_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with lifetime.bulk():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        lifetime.settle()


def test_an_error_in_a_bulk_phase_ends_it() -> None:
    try:
        with lifetime.bulk():
            raise ValueError("x")
    except ValueError:
        pass
    assert gc.isenabled()
    lifetime.settle()


def test_done_with_frees_in_a_library_and_keeps_in_the_console_script() -> None:
    thing = Node()
    gone = weakref.ref(thing)
    lifetime.done_with(thing)
    del thing
    assert gone() is None  # this process never asked to keep anything
    script = ("import weakref\nfrom inventory import lifetime\nclass N: pass\nlifetime.keep_until_exit()\n"
              "n = N()\nr = weakref.ref(n)\nlifetime.done_with(n)\ndel n\nprint(r() is not None)\n")
    kept = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    assert kept.stdout.strip() == "True"
