import threading
import time

from inventory.parallel import run_bounded


def test_results_come_back_in_order_with_errors_kept() -> None:
    def work(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        time.sleep(0.01 * (5 - n))
        return n * n

    outcomes = run_bounded(list(range(5)), work, workers=5, item_timeout=5)
    assert [o.result for o in outcomes] == [0, 1, 4, None, 16]
    assert isinstance(outcomes[3].error, ValueError)


def test_a_hung_item_is_abandoned_and_the_rest_finish() -> None:
    release = threading.Event()

    def work(n: int) -> int:
        if n == 0:
            release.wait(30)  # a host that accepts TCP and never answers
        return n

    started = time.monotonic()
    outcomes = run_bounded([0, 1, 2], work, workers=2, item_timeout=0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert outcomes[0].timed_out and [o.result for o in outcomes[1:]] == [1, 2]
    assert elapsed < 5


def test_workers_bound_concurrency() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return n

    run_bounded(list(range(12)), work, workers=3, item_timeout=5)
    assert peak == 3


def test_overall_deadline_stops_waiting() -> None:
    outcomes = run_bounded([1, 2], lambda n: time.sleep(10), workers=2, item_timeout=None,
                           deadline=time.monotonic() + 0.3)
    assert all(o.timed_out for o in outcomes)
