"""The cloud's compute thread takes the most urgent waiting request first, arrival order among equals."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from services.cloud.compute import LAST, PriorityCompute


def _running(f: Future[Any]) -> None:
    deadline = time.monotonic() + 30
    while not f.running():
        assert time.monotonic() < deadline, "the compute thread never started the call"
        time.sleep(0.001)


def test_waiting_calls_run_most_urgent_first_then_in_arrival_order() -> None:
    compute = PriorityCompute(threads=1)
    release, ran = threading.Event(), []
    try:
        busy = compute.submit(5, lambda: release.wait(30))
        _running(busy)  # the thread is busy while the others queue
        futures = [compute.submit(p, lambda p=p, i=i: ran.append((p, i)))  # type: ignore[misc]
                   for i, p in enumerate([5, LAST, 3, 1, 5, 1])]
        release.set()
        assert busy.result(30) is True
        for f in futures:
            f.result(30)
    finally:
        compute.shutdown()
    assert ran == [(1, 3), (1, 5), (3, 2), (5, 0), (5, 4), (LAST, 1)]


def test_a_failing_call_fails_its_own_future_only() -> None:
    compute = PriorityCompute(threads=1)
    try:
        boom = compute.submit(1, lambda: 1 // 0)
        after = compute.submit(1, lambda: "fine")
        assert isinstance(boom.exception(30), ZeroDivisionError) and after.result(30) == "fine"
    finally:
        compute.shutdown()


def test_shutdown_lets_the_running_call_end_and_cancels_the_waiting_ones() -> None:
    compute = PriorityCompute(threads=1)
    release = threading.Event()
    busy = compute.submit(2, lambda: release.wait(30))
    _running(busy)
    left = compute.submit(1, lambda: "never")
    threading.Timer(0.2, release.set).start()
    compute.shutdown()
    assert busy.result(30) is True and left.cancelled()
