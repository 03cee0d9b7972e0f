"""The batch claim (``services.orchestrator.batching``) against a real redis-server: the head of the queue
in priority order, per-priority queue delays, expired and orphaned ids, fencing per task."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgesplit.models import get_spec
from services.orchestrator.batching import BatchQueue, delay_of, rows_within
from services.orchestrator.queue import TaskQueue

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
MODEL = "digits-cnn"


async def _submit(q: TaskQueue, priority: int, timeout_s: float = 60.0) -> str:
    return (await q.submit(MODEL, f"input {priority}".encode(), priority, timeout_s, max_queue=100)).id


def test_a_priority_not_listed_takes_the_largest_listed_one_below_it() -> None:
    delays = {1: 0.0, 3: 0.5}
    assert [delay_of(delays, p) for p in (1, 2, 3, 9)] == [0.0, 0.0, 0.5, 0.5]
    assert delay_of({2: 0.1}, 1) == 0.1  # below every listed priority: the smallest listed one


def test_a_batch_s_maps_fit_in_one_request_body() -> None:
    for name in ("alexnet-paper", "vgg16-paper", "digits-cnn"):
        spec = get_spec(name)
        largest = 4 * max(int(np.prod(s)) for s in spec.shapes())  # float32 bytes of its largest map
        rows = rows_within(spec, 64 * 1024 * 1024)
        assert rows * largest <= 64 * 1024 * 1024 < (rows + 1) * (largest + 4096), name
    assert rows_within(get_spec("vgg16-paper"), 1024) == 1  # never below one task


async def test_a_batch_is_the_head_of_the_queue_in_priority_order(queue: TaskQueue) -> None:
    order = [5, 1, 5, 3, 1, 5]
    ids = [await _submit(queue, p) for p in order]
    want = [ids[i] for i in sorted(range(len(order)), key=lambda i: (order[i], i))]
    batches = BatchQueue(queue, 4, {1: 0.0}, 10)
    first = await batches.claim(MODEL, lease_s=30)
    second = await batches.claim(MODEL, lease_s=30)
    assert [t.id for t in first.tasks] == want[:4] and [t.id for t in second.tasks] == want[4:]
    assert [t.priority for t in first.tasks] == [1, 1, 3, 5]
    assert first.tasks[0].input == b"input 1"
    assert len({t.token for t in first.tasks + second.tasks}) == 6  # one fence per task
    assert await queue.pending(MODEL) == {} and await queue.inflight(MODEL) == 6
    assert [await queue.status(t.id) for t in first.tasks] == ["running"] * 4
    assert await queue.renew(first.tasks[2], 30)
    assert await queue.finish(first.tasks[2], "done", {"logits": b""}) is not None
    assert await queue.finish(first.tasks[3], "done", {}) is not None  # each task acknowledged alone
    assert (await batches.claim(MODEL, lease_s=30)).tasks == []


async def test_a_partial_batch_waits_unless_an_urgent_task_comes(queue: TaskQueue) -> None:
    batches = BatchQueue(queue, 4, {1: 0.0, 2: 60.0}, 10)
    low = await _submit(queue, 5)
    waiting = await batches.claim(MODEL, lease_s=30)
    assert waiting.tasks == [] and waiting.wait_until is not None and waiting.wait_until > time.time() + 30
    assert await queue.status(low) == "queued"
    urgent = await _submit(queue, 1)
    got = await batches.claim(MODEL, lease_s=30)
    assert [t.id for t in got.tasks] == [urgent, low] and got.wait_until is None


async def test_a_batch_is_capped_by_its_most_urgent_task_s_priority(queue: TaskQueue) -> None:
    ids = [await _submit(queue, p) for p in (3, 3, 3, 1, 1, 5, 5, 5)]
    batches = BatchQueue(queue, 8, {1: 0.0}, 10, caps={1: 1, 3: 2, 5: 8})
    got = [[t.id for t in (await batches.claim(MODEL, lease_s=30)).tasks] for _ in range(5)]
    assert got == [[ids[3]], [ids[4]], ids[0:2], [ids[2], ids[5]], ids[6:8]]


async def test_a_limit_caps_a_batch_below_max_batch(queue: TaskQueue) -> None:
    ids = [await _submit(queue, 5) for _ in range(7)]
    batches = BatchQueue(queue, 4, {1: 0.0}, 10)
    got = [[t.id for t in (await batches.claim(MODEL, lease_s=30, limit=limit)).tasks] for limit in (2, 9, 0)]
    assert got == [ids[0:2], ids[2:6], ids[6:7]]  # 9 is above max_batch: max_batch holds; 0: no limit


async def test_expired_and_orphaned_ids_are_reported_and_skipped(queue: TaskQueue) -> None:
    gone = await _submit(queue, 1, timeout_s=0.01)
    live = await _submit(queue, 2)
    await queue.r.zadd(queue.key("q", MODEL), {"no-such-task": 0})
    time.sleep(0.05)
    got = await BatchQueue(queue, 4, {1: 0.0}, 10).claim(MODEL, lease_s=30)
    assert [t.id for t in got.tasks] == [live]
    assert got.expired == [gone] and got.orphans == ["no-such-task"]
    assert await queue.status(gone) == "expired"
