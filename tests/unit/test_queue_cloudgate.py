"""The priority gate around cloud calls: bounded concurrency, most urgent waiter first."""

from __future__ import annotations

import asyncio

import pytest

from edgesplit.queueing import QueueOrder
from services.orchestrator.cloudgate import PriorityGate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_go_by_priority_then_submission_time() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def call(name: str, priority: int, submitted: float) -> None:
        async with gate.slot(priority, submitted):
            order.append(name)
            if name == "first":
                await release.wait()

    tasks = [asyncio.create_task(call("first", 5, 0.0))]
    await _settle()
    # arrival order at the cloud stage: a crowd of priority 5, then 3, then the urgent one
    for name, prio, submitted in [("p5-a", 5, 1.0), ("p5-b", 5, 2.0), ("p3", 3, 3.0), ("p5-c", 5, 0.5),
                                  ("p1", 1, 4.0)]:
        tasks.append(asyncio.create_task(call(name, prio, submitted)))
        await _settle()
    assert order == ["first"] and gate.waiting == 5
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["first", "p1", "p3", "p5-c", "p5-a", "p5-b"]
    assert gate.busy == 0 and gate.waiting == 0


async def test_with_aging_waiters_go_in_the_queues_order() -> None:
    # Issue 16: the gate ignored aging (strict priority, then submission time); it now takes the
    # queue's order, so a task that aged past fresher urgent ones in the queue keeps its place here.
    order = QueueOrder(aging_s=0.1)
    gate = PriorityGate(1, order)
    got: list[str] = []
    release = asyncio.Event()

    async def call(name: str, priority: int, submitted: float) -> None:
        async with gate.slot(priority, submitted):
            got.append(name)
            if name == "first":
                await release.wait()

    tasks = [asyncio.create_task(call("first", 1, 100.0))]
    await _settle()
    # p5 waited 1 s longer than the p1s: 10 levels, so 5 - 10 < 1; p3-late submitted 0.1 s after p1-a
    waiters = [("p1-a", 1, 101.0), ("p5-old", 5, 100.0), ("p3-late", 3, 101.1), ("p1-b", 1, 101.05)]
    for name, prio, submitted in waiters:
        tasks.append(asyncio.create_task(call(name, prio, submitted)))
        await _settle()
    release.set()
    await asyncio.gather(*tasks)
    want = ["first", *sorted((w[0] for w in waiters),
                             key=lambda n: next(order.key(p, t, 0) for m, p, t in waiters if m == n))]
    assert got == want == ["first", "p5-old", "p1-a", "p1-b", "p3-late"]


async def test_at_most_limit_calls_are_in_flight() -> None:
    gate = PriorityGate(2)
    inside = peak = 0

    async def call(priority: int) -> None:
        nonlocal inside, peak
        async with gate.slot(priority):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(call(1 + i % 5) for i in range(20)))
    assert peak == 2 and gate.busy == 0


async def test_a_cancelled_waiter_does_not_keep_a_slot() -> None:
    gate = PriorityGate(1)
    hold = asyncio.Event()
    order: list[int] = []

    async def call(priority: int) -> None:
        async with gate.slot(priority):
            order.append(priority)
            if priority == 9:
                await hold.wait()

    first = asyncio.create_task(call(9))
    await _settle()
    urgent, later = asyncio.create_task(call(1)), asyncio.create_task(call(5))
    await _settle()
    urgent.cancel()
    await _settle()
    hold.set()
    await asyncio.gather(first, later)
    assert urgent.cancelled() and order == [9, 5] and gate.busy == 0
    async with gate.slot(3):  # free again at once
        assert gate.busy == 1


async def test_urgent_calls_take_the_reserve_while_batches_hold_every_slot() -> None:
    # the express lane (issue 17): the cloud computes urgent requests beside the batches, so an urgent
    # call does not wait for one of the `limit` batch calls to end; the reserve is the urgent calls' only
    gate = PriorityGate(2, reserve=1)
    hold = asyncio.Event()
    inside: list[str] = []

    async def call(name: str, priority: int) -> None:
        async with gate.slot(priority, 0.0):
            inside.append(name)
            await hold.wait()

    tasks = [asyncio.create_task(call(n, 5)) for n in ("bulk-a", "bulk-b", "bulk-c")]
    await _settle()
    assert inside == ["bulk-a", "bulk-b"] and gate.waiting == 1  # bulk-c waits for a regular slot
    tasks.append(asyncio.create_task(call("urgent-1", 1)))
    await _settle()
    assert inside[-1] == "urgent-1" and gate.busy == 3  # in at once, on the reserve, past bulk-c
    tasks.append(asyncio.create_task(call("urgent-2", 1)))
    await _settle()
    assert "urgent-2" not in inside and gate.waiting == 2  # the reserve is full: it waits, first in line
    hold.set()
    await asyncio.gather(*tasks)
    assert inside == ["bulk-a", "bulk-b", "urgent-1", "urgent-2", "bulk-c"] and gate.busy == 0


async def test_a_freed_reserved_slot_goes_to_urgent_calls_only() -> None:
    gate = PriorityGate(1, reserve=1)
    releases = {name: asyncio.Event() for name in ("bulk", "urgent", "bulk-late")}
    releases["bulk-late"].set()
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        async with gate.slot(priority, 0.0):
            order.append(name)
            await releases[name].wait()

    held = [asyncio.create_task(call("bulk", 5)), asyncio.create_task(call("urgent", 1))]
    await _settle()
    late = asyncio.create_task(call("bulk-late", 5))
    await _settle()
    assert order == ["bulk", "urgent"] and gate.busy == 2 and gate.waiting == 1
    releases["urgent"].set()  # the reserved slot comes free: 2 holders would still be 1 over the limit
    await _settle()
    assert order == ["bulk", "urgent"] and gate.busy == 1 and gate.waiting == 1
    releases["bulk"].set()
    await asyncio.gather(*held, late)
    assert order == ["bulk", "urgent", "bulk-late"] and gate.busy == 0


def test_a_negative_reserve_is_refused() -> None:
    with pytest.raises(ValueError, match="reserve"):
        PriorityGate(1, reserve=-1)


@pytest.mark.parametrize(("mode", "max_batch", "express", "given", "want"), [
    ("dads", 8, True, None, 4),  # whole tasks at the cloud: a batch's call holds a slot long
    ("no-split", 8, True, None, 4),
    ("split", 8, True, None, 0),  # FC layers only: slots free within tens of ms
    ("split", 8, True, 2, 2),  # as set
    ("dads", 1, True, None, 0),  # no batching: no express lane, no reserve
    ("dads", 8, False, 3, 0),
])
def test_the_gate_reserve_follows_the_mode_and_the_express_lane(mode: str, max_batch: int, express: bool,
                                                                given: int | None, want: int) -> None:
    from services.orchestrator.settings import OrchestratorSettings

    s = OrchestratorSettings(models=["digits-cnn"], mode=mode, max_batch=max_batch, express_lane=express,
                             cloud_concurrency=4, cloud_urgent_reserve=given)
    assert s.urgent_reserve() == want


async def test_an_urgent_waiter_behind_an_aged_bulk_head_takes_a_freed_reserved_slot() -> None:
    """With aging, a bulk call waiting long enough is first in the queue's order; it may not take a
    reserved slot, so when one comes free the urgent waiter behind it does, and the bulk call gets the
    next regular slot."""
    gate = PriorityGate(1, QueueOrder(aging_s=1.0), reserve=1)
    releases = {name: asyncio.Event() for name in ("bulk", "urgent", "bulk-old", "urgent-late")}
    releases["bulk-old"].set()
    releases["urgent-late"].set()
    order: list[str] = []

    async def call(name: str, priority: int, submitted: float) -> None:
        async with gate.slot(priority, submitted):
            order.append(name)
            await releases[name].wait()

    held = [asyncio.create_task(call("bulk", 5, 50.0)), asyncio.create_task(call("urgent", 1, 50.0))]
    await _settle()
    waiting = [asyncio.create_task(call("bulk-old", 5, 0.0)),  # key 5: ahead of urgent-late's 101
               asyncio.create_task(call("urgent-late", 1, 100.0))]
    await _settle()
    assert order == ["bulk", "urgent"] and gate.waiting == 2
    releases["urgent"].set()
    await _settle()
    assert order == ["bulk", "urgent", "urgent-late"] and gate.waiting == 1
    releases["bulk"].set()
    await asyncio.gather(*held, *waiting)
    assert order == ["bulk", "urgent", "urgent-late", "bulk-old"] and gate.busy == 0
