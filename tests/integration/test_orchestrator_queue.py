"""The Redis task queue against a real redis-server: order, aging, leases, reaper, timeouts, idempotency."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgesplit.errors import Conflict, QueueFull, TaskNotFound
from services.orchestrator.queue import TaskQueue

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
MODEL = "digits-cnn"


async def _submit(q: TaskQueue, priority: int, timeout_s: float = 60.0, aging_s: float = 0.0,
                  **kw: object) -> str:
    sub = await q.submit(MODEL, b"x", priority, timeout_s, max_queue=100, aging_s=aging_s, **kw)  # type: ignore[arg-type]
    return sub.id


async def _drain(q: TaskQueue) -> list[str]:
    ids = []
    while True:
        task, _, _ = await q.claim(MODEL, lease_s=30)
        if task is None:
            return ids
        ids.append(task.id)


async def test_priority_then_fifo(queue: TaskQueue) -> None:
    order = [5, 1, 5, 3, 1, 5]
    ids = [await _submit(queue, p) for p in order]
    want = [ids[i] for i in sorted(range(len(order)), key=lambda i: (order[i], i))]
    assert await queue.pending(MODEL) == {1: 2, 3: 1, 5: 3}
    assert await _drain(queue) == want
    assert await queue.pending(MODEL) == {}


async def test_aging_lets_an_old_low_priority_task_pass(queue: TaskQueue) -> None:
    old = await _submit(queue, 5, aging_s=0.05)
    await asyncio.sleep(0.3)  # 6 levels of aging: effective priority 5 - 6 = -1
    fresh = [await _submit(queue, 1, aging_s=0.05) for _ in range(3)]
    assert await _drain(queue) == [old, *fresh]


async def test_full_queue_raises_with_retry_after(queue: TaskQueue) -> None:
    for _ in range(3):
        await queue.submit(MODEL, b"x", 1, 60, max_queue=3)
    with pytest.raises(QueueFull) as err:
        await queue.submit(MODEL, b"x", 1, 60, max_queue=3, retry_after_s=2.0)
    assert err.value.retry_after_s == 2.0
    assert await queue.queue_len(MODEL) == 3


async def test_idempotent_submit(queue: TaskQueue) -> None:
    a = await queue.submit(MODEL, b"x", 2, 60, max_queue=10, idem_key="k1", fingerprint="f")
    b = await queue.submit(MODEL, b"x", 2, 60, max_queue=10, idem_key="k1", fingerprint="f")
    assert (b.id, b.duplicate, a.duplicate) == (a.id, True, False)
    with pytest.raises(Conflict):
        await queue.submit(MODEL, b"y", 2, 60, max_queue=10, idem_key="k1", fingerprint="g")
    assert await queue.queue_len(MODEL) == 1


async def test_claim_finish_and_ttl(queue: TaskQueue) -> None:
    tid = await _submit(queue, 2)
    task, _, _ = await queue.claim(MODEL, lease_s=30)
    assert task is not None and task.id == tid and task.input == b"x" and task.attempts == 1
    assert (await queue.get(tid))["status"] == "running"
    assert await queue.inflight(MODEL) == 1
    assert await queue.finish(task, "done", {"result": "{}"})
    info = await queue.get(tid)
    assert info["status"] == "done" and "input" not in info
    assert 0 < await queue.r.ttl(queue.key("task", tid)) <= 60
    assert await queue.inflight(MODEL) == 0
    with pytest.raises(TaskNotFound):
        await queue.get("nope")


async def test_expired_lease_is_requeued_with_its_score_and_stale_ack_ignored(queue: TaskQueue) -> None:
    first = await _submit(queue, 3)
    task, _, _ = await queue.claim(MODEL, lease_s=0.05)
    assert task is not None
    later = await _submit(queue, 3)
    await asyncio.sleep(0.1)
    assert await queue.reap(MODEL) == 1
    assert (await queue.get(first))["status"] == "queued"
    assert not await queue.finish(task, "done", {})  # the old worker lost its lease
    assert await _drain(queue) == [first, later]  # FIFO kept: the re-queued task keeps its place


async def test_lease_renewal_keeps_the_task(queue: TaskQueue) -> None:
    await _submit(queue, 1)
    task, _, _ = await queue.claim(MODEL, lease_s=0.2)
    assert task is not None
    for _ in range(4):
        await asyncio.sleep(0.1)
        assert await queue.renew(task, 0.2)
        assert await queue.reap(MODEL) == 0
    assert await queue.finish(task, "done", {})


async def test_too_many_lost_leases_fail_the_task(queue: TaskQueue) -> None:
    tid = await _submit(queue, 1)
    for _ in range(2):  # max_attempts = 2
        task, _, _ = await queue.claim(MODEL, lease_s=0.01)
        assert task is not None
        await asyncio.sleep(0.03)
        await queue.reap(MODEL)
    info = await queue.get(tid)
    assert info["status"] == "failed" and "lease expired" in info["error"]


async def test_timeout_while_queued_expires_on_the_timer(queue: TaskQueue) -> None:
    short = await _submit(queue, 1, timeout_s=0.05)
    keep = await _submit(queue, 1, timeout_s=60)
    await asyncio.sleep(0.1)
    assert await queue.expire(MODEL) == [short]
    info = await queue.get(short)
    assert info["status"] == "expired" and "queued" in info["error"]
    assert await queue.pending(MODEL) == {1: 1}
    assert await _drain(queue) == [keep]


async def test_claim_skips_expired_tasks(queue: TaskQueue) -> None:
    short = await _submit(queue, 1, timeout_s=0.02)
    keep = await _submit(queue, 2)
    await asyncio.sleep(0.05)
    task, expired, _ = await queue.claim(MODEL, lease_s=30)
    assert task is not None and task.id == keep and expired == [short]


async def test_give_back_requeues_without_counting_an_attempt(queue: TaskQueue) -> None:
    tid = await _submit(queue, 1)
    task, _, _ = await queue.claim(MODEL, lease_s=30)
    assert task is not None and await queue.give_back(task)
    again, _, _ = await queue.claim(MODEL, lease_s=30)
    assert again is not None and again.id == tid and again.attempts == 1


async def test_plan_roundtrip(queue: TaskQueue) -> None:
    assert await queue.get_plan(MODEL) is None
    await queue.put_plan(MODEL, {"version": 3, "stages": []})
    assert (await queue.get_plan(MODEL)) == {"version": 3, "stages": []}
    assert time.time() > 0


async def test_a_submit_claims_its_task_only_when_a_claim_would_take_it_next(queue: TaskQueue) -> None:
    """``claim_lease_s``: the submit claims its own task when the queue holds nothing that comes
    before it, exactly as a claim would (running, in ``inflight`` under its token, never queued);
    else it queues it, and the order of the queue is kept."""
    alone = await queue.submit(MODEL, b"x", 3, 60, max_queue=100, claim_lease_s=30)
    assert alone.claimed is not None and alone.claimed.id == alone.id and alone.claimed.attempts == 1
    record = await queue.get(alone.id)
    assert (record["status"], record["attempts"]) == ("running", "1")
    assert await queue.inflight(MODEL) == 1 and await queue.queue_len(MODEL) == 0
    assert await queue.pending(MODEL) == {}
    assert await queue.finish(alone.claimed, "done", {"logits": b"y"}) is not None  # its token holds

    low = await _submit(queue, 5)
    urgent = await queue.submit(MODEL, b"x", 1, 60, max_queue=100, claim_lease_s=30)
    assert urgent.claimed is not None  # it comes before the queued priority-5 task
    second = await _submit(queue, 1)
    late = await queue.submit(MODEL, b"x", 1, 60, max_queue=100, claim_lease_s=30)
    assert late.claimed is None, "claimed past a priority-1 task queued before it"
    assert await queue.pending(MODEL) == {1: 2, 5: 1}
    assert await _drain(queue) == [second, late.id, low]


async def test_a_task_claimed_by_its_submit_comes_back_when_its_lease_runs_out(queue: TaskQueue) -> None:
    """A submit's claim holds a lease like any claim: if its process dies before running the task,
    the reaper puts it back in the queue and nothing is lost."""
    sub = await queue.submit(MODEL, b"x", 2, 60, max_queue=100, claim_lease_s=0.05)
    assert sub.claimed is not None
    await asyncio.sleep(0.1)
    assert await queue.reap(MODEL) == 1
    assert (await queue.get(sub.id))["status"] == "queued"
    assert not await queue.finish(sub.claimed, "done", {})
    assert await _drain(queue) == [sub.id]
