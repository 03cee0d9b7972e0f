"""The compute thread (the cloud's, the executor's workers): the most urgent waiting call first, arrival
order among equals; stop drains, shutdown cancels; the urgent lane."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import torch

from edgesplit.split.pause import layer_forward, pause_point, pause_with
from services.common.compute import (
    LAST,
    ComputeThread,
    ThreadPolicy,
    UrgentBatches,
    UrgentGate,
    UrgentLane,
    Waiting,
)


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


ROOT = os.geteuid() == 0


def _policy_and_nice() -> tuple[int, int]:
    tid = threading.get_native_id()
    return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)


def test_a_bulk_thread_runs_under_its_policy_and_the_others_do_not() -> None:
    """``ThreadPolicy``: the bulk thread runs its calls niced and under SCHED_IDLE (Linux); a thread
    without a policy, an urgent lane's without one, and the caller keep the normal policy at nice 0;
    an urgent lane of nice -5 runs at -5 where the process may raise its priority (root: CI), at 0
    elsewhere."""
    bulk, plain = ComputeThread(1, "test-bulk", ThreadPolicy(nice=10, idle=True)), ComputeThread(1)
    lane = UrgentLane(1, "test-urgent")  # no policy: the default
    raised = UrgentLane(1, "test-raised", policy=ThreadPolicy(nice=-5))  # needs CAP_SYS_NICE (root)
    try:
        assert bulk.submit(_policy_and_nice).result(timeout=30) == (os.SCHED_IDLE, 10)
        assert ThreadPolicy(nice=5).idle is False
        assert plain.submit(_policy_and_nice).result(timeout=30) == (os.SCHED_OTHER, 0)
        assert lane.submit(_policy_and_nice).result(timeout=30) == (os.SCHED_OTHER, 0)
        assert raised.submit(_policy_and_nice).result(timeout=30) == (os.SCHED_OTHER, -5 if ROOT else 0)
        assert _policy_and_nice() == (os.SCHED_OTHER, 0)
    finally:
        bulk.shutdown()
        plain.shutdown()
        lane.shutdown()
        raised.shutdown()


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


def _bulk_steps(gate: UrgentGate, hold_s: float) -> tuple[int, int]:
    """A bulk thread stepping through pause points while an urgent call on the lane holds the gate
    for ``hold_s``: (steps taken while the urgent call ran, steps after it)."""
    bulk, lane = ComputeThread(1, "test-bulk", gate=gate), UrgentLane(1, "test-urgent", gate=gate)
    phase, steps, stop = ["before"], {"before": 0, "urgent": 0, "after": 0}, threading.Event()

    def bulk_work() -> None:  # a long batch: a pause point before each of its "layers"
        while not stop.is_set():
            pause_point()
            steps[phase[0]] += 1
            time.sleep(0.001)

    def urgent_work() -> None:
        phase[0] = "urgent"
        time.sleep(hold_s)
        phase[0] = "after"

    try:
        running = bulk.submit(bulk_work)
        _running(running)
        while steps["before"] < 5:
            time.sleep(0.001)
        lane.submit(urgent_work).result(timeout=30)
        while steps["after"] < 5:  # the bulk work goes on once the urgent call has ended
            time.sleep(0.001)
        stop.set()
        running.result(timeout=30)
    finally:
        stop.set()
        bulk.shutdown()
        lane.shutdown()
    return steps["urgent"], steps["after"]


def test_bulk_work_waits_at_its_pause_points_while_an_urgent_call_computes() -> None:
    """The gate closed by the urgent lane holds the bulk thread at its next pause point (at most the
    step it was in passes), and lets it go on after; with no gate the bulk work runs beside it."""
    during, after = _bulk_steps(UrgentGate(hold_s=30.0), hold_s=0.5)
    assert during <= 1 and after >= 5
    beside, _ = _bulk_steps(UrgentGate(hold_s=0.0), hold_s=0.5)  # 0: bulk work never waits
    assert beside >= 20


def test_a_bulk_thread_waits_at_most_hold_s_at_each_pause_point() -> None:
    """An urgent call longer than the gate's hold does not starve the bulk work: it goes on, one step
    per hold."""
    during, _ = _bulk_steps(UrgentGate(hold_s=0.05), hold_s=1.0)
    assert 2 <= during <= 21


def test_urgent_batches_group_by_key_cap_rows_and_hand_errors_to_each_member() -> None:
    """``UrgentBatches``: while the first batch computes, the waiting requests of the head's key go
    together (at most ``max_rows`` rows), other keys after, in arrival order; an error of a batch
    reaches each of its members, and the next batch still runs."""
    batches: list[list[str]] = []

    async def compute(group: list[Waiting[str]]) -> list[str]:
        batches.append([w.item for w in group])
        await asyncio.sleep(0.05)
        if any(w.item == "bad" for w in group):
            raise ValueError("this batch failed")
        return [w.item.upper() for w in group]

    async def main() -> list[object]:
        lane: UrgentBatches[str] = UrgentBatches(compute, max_rows=4)
        first = asyncio.create_task(lane.run("a", 1, "a0"))
        await asyncio.sleep(0.01)  # a0 computes alone; the rest wait for it
        rest = [asyncio.create_task(lane.run(k, n, item)) for k, n, item in
                [("a", 2, "a1"), ("b", 1, "b0"), ("a", 2, "a2"), ("a", 1, "bad"), ("a", 3, "a3")]]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert batches == [["a0"], ["a1", "a2"], ["b0"], ["bad", "a3"]]
    assert results[:4] == ["A0", "A1", "B0", "A2"]
    assert all(isinstance(r, ValueError) for r in results[4:]), results


def test_a_large_fully_connected_layer_pauses_between_chunks_on_a_bulk_thread_only() -> None:
    """``layer_forward``: on a thread with a pause wait, a batch through a Linear of more than
    ``chunk`` outputs passes one pause point per chunk and gives the unsplit layer's numbers; one row,
    or a thread without a wait (an urgent lane's), runs the layer whole after one pause point."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 40)
    batch, row = torch.randn(5, 96), torch.randn(1, 96)
    seen: list[int] = []

    def run(x: torch.Tensor, wait: bool) -> torch.Tensor:
        pause_with((lambda: seen.append(1)) if wait else None)
        try:
            with torch.no_grad():
                return layer_forward(layer, x, chunk=16)
        finally:
            pause_with(None)

    with torch.no_grad():
        want_batch, want_row = layer(batch), layer(row)
    got = run(batch, wait=True)
    assert len(seen) == 3  # outputs 0-15, 16-31, 32-39
    torch.testing.assert_close(got, want_batch, rtol=1e-6, atol=1e-6)
    seen.clear()
    torch.testing.assert_close(run(row, wait=True), want_row, rtol=0, atol=0)
    assert len(seen) == 1
    seen.clear()
    torch.testing.assert_close(run(batch, wait=False), want_batch, rtol=0, atol=0)
    assert seen == []
