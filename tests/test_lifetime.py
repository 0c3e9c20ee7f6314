"""Bulk data made without the cyclic collector's young passes; in the console script (a process that ends with
os._exit) frozen, and what it is done with kept until it exits; in a library, nothing frozen or kept."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import pytest

from inventory import lifetime


class Node:
    """An object the collector tracks, that can be in a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def no_phase_running() -> None:
    """A thread an earlier test abandoned may still be in a bulk phase: wait for it to end."""
    for _ in range(100):
        if lifetime._phases == 0:
            break
        time.sleep(0.1)
    assert lifetime._phases == 0 and gc.isenabled()


def run_as_console_script(code: str) -> str:
    script = "import gc\nfrom inventory import lifetime\nlifetime.keep_until_exit()\n" + code
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent).stdout.strip()


def test_a_bulk_phase_pauses_collection_in_every_thread_until_the_last_one_ends() -> None:
    other_started, other_may_end = threading.Event(), threading.Event()

    def other_phase() -> None:
        with lifetime.bulk():
            other_started.set()
            assert other_may_end.wait(10)

    frozen = gc.get_freeze_count()
    with lifetime.bulk():
        assert not gc.isenabled()
        made = [Node() for _ in range(1000)]
        worker = threading.Thread(target=other_phase)
        worker.start()
        assert other_started.wait(10)
    assert not gc.isenabled()  # the other thread's phase still runs
    other_may_end.set()
    worker.join(10)
    assert gc.isenabled()  # the last phase ended: collection resumes
    assert gc.get_freeze_count() == frozen and made  # a library's objects are not frozen


def test_a_cycle_made_in_a_library_bulk_phase_is_collected() -> None:
    with lifetime.bulk():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
    gc.collect()
    assert gone() is None


def test_collection_left_off_by_the_caller_stays_off_and_an_error_ends_the_phase() -> None:
    gc.disable()
    try:
        with lifetime.bulk():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ValueError):
        with lifetime.bulk():
            raise ValueError("x")
    assert gc.isenabled() and lifetime._phases == 0


def test_the_console_script_freezes_what_a_bulk_phase_made() -> None:
    out = run_as_console_script(
        "class N: pass\nbefore = gc.get_freeze_count()\nwith lifetime.bulk():\n    made = [N() for _ in range(1000)]\n"
        "print(gc.get_freeze_count() - before >= 1000, gc.isenabled())\n")
    assert out == "True True"


def test_done_with_frees_in_a_library_and_keeps_in_the_console_script() -> None:
    thing = Node()
    gone = weakref.ref(thing)
    lifetime.done_with(thing)
    del thing
    assert gone() is None  # this process never asked to keep anything
    out = run_as_console_script("import weakref\nclass N: pass\nn = N()\nr = weakref.ref(n)\nlifetime.done_with(n)\n"
                                "del n\nprint(r() is not None)\n")
    assert out == "True"
