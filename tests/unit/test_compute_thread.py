"""The compute thread (the cloud's, the executor's workers): the most urgent waiting call first, arrival
order among equals; stop drains, shutdown cancels; the urgent lane."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from services.common.compute import LAST, ComputeThread, UrgentLane


def _running(f: Future[Any]) -> None:
    deadline = time.monotonic() + 30
    while not f.running():
        assert time.monotonic() < deadline, "the compute thread never started the call"
        time.sleep(0.001)


def test_waiting_calls_run_most_urgent_first_then_in_arrival_order() -> None:
    compute = ComputeThread(threads=1)
    release, ran = threading.Event(), []
    try:
        busy = compute.submit(lambda: release.wait(30), 5)
        _running(busy)  # the thread is busy while the others queue
        futures = [compute.submit(lambda p=p, i=i: ran.append((p, i)), p)  # type: ignore[misc]
                   for i, p in enumerate([5, LAST, 3, 1, 5, 1])]
        release.set()
        assert busy.result(30) is True
        for f in futures:
            f.result(30)
    finally:
        compute.shutdown()
    assert ran == [(1, 3), (1, 5), (3, 2), (5, 0), (5, 4), (LAST, 1)]


def test_a_failing_call_fails_its_own_future_only() -> None:
    compute = ComputeThread(threads=1)
    try:
        boom = compute.submit(lambda: 1 // 0, 1)
        after = compute.submit(lambda: "fine", 1)
        assert isinstance(boom.exception(30), ZeroDivisionError) and after.result(30) == "fine"
    finally:
        compute.shutdown()


def test_shutdown_lets_the_running_call_end_and_cancels_the_waiting_ones() -> None:
    compute = ComputeThread(threads=1)
    release = threading.Event()
    busy = compute.submit(lambda: release.wait(30), 2)
    _running(busy)
    left = compute.submit(lambda: "never", 1)
    threading.Timer(0.2, release.set).start()
    compute.shutdown()
    assert busy.result(30) is True and left.cancelled()


def test_stop_lets_the_queued_calls_run_then_ends_the_thread() -> None:
    """What an executor's sub-zone does when it shrinks: the worker finishes what it was given."""
    compute = ComputeThread(threads=1)
    release, ran = threading.Event(), []
    busy = compute.submit(lambda: release.wait(30))
    _running(busy)
    queued = [compute.submit(lambda i=i: ran.append(i)) for i in range(3)]  # type: ignore[misc]
    compute.stop()
    release.set()
    compute.join(30)
    assert not compute.alive
    assert [f.result(0) for f in queued] == [None, None, None] and ran == [0, 1, 2]


def test_the_urgent_lane_runs_beside_bulk_work_and_ends_when_quiet() -> None:
    """``UrgentLane``: wanted while the bulk side is busy or its work ended within ``quiet_s``; once
    quiet, not wanted, and its idle thread (with its OpenMP team) ends; the next use starts another."""
    lane = UrgentLane(1, "t-urgent", quiet_s=30.0)
    assert not lane.wanted(bulk_busy=False) and lane.thread is None  # no bulk work yet
    assert lane.wanted(bulk_busy=True)
    lane.bulk_done()
    assert lane.wanted(bulk_busy=False)  # bulk work ended just now
    assert lane.submit(lambda: 6 * 7).result(timeout=30) == 42
    first = lane.thread
    assert first is not None and first.alive
    lane.quiet_s = 0.0  # the bulk side has been quiet long enough
    assert not lane.wanted(bulk_busy=False) and lane.thread is None
    first.join(10.0)
    assert not first.alive
    assert lane.submit(lambda: "again").result(timeout=30) == "again" and lane.thread is not first
    lane.shutdown()
