"""The task queue's bookkeeping against a real, private redis-server run as edgesplit runs it
(``tooling.stack.redis_args``): cancellation, retention bounded by count, orphaned queue entries,
and a Redis at ``maxmemory``, where submits are refused whole and accepted tasks still move on."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from edgesplit.errors import Conflict, TaskNotFound, Unavailable
from services.orchestrator.queue import TaskQueue
from tooling.proc import free_port
from tooling.stack import redis_answers, redis_args

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
MODEL = "digits-cnn"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private durable redis-server with a small ``maxmemory`` (4 MB)."""
    port = free_port()
    proc = subprocess.Popen(redis_args(port, tmp_path, "everysec", "4mb"), stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[TaskQueue]:
    client = aioredis.Redis.from_url(redis_url)
    yield TaskQueue(client, prefix="t:", result_ttl_s=60, max_attempts=3, max_finished=5)
    await client.aclose()


async def _submit(q: TaskQueue, data: bytes = b"x") -> str:
    return (await q.submit(MODEL, data, 3, 60, max_queue=10**6)).id


async def test_cancel_a_queued_and_a_running_task(queue: TaskQueue) -> None:
    queued, running = await _submit(queue), await _submit(queue)
    claimed, _, _ = await queue.claim(MODEL, lease_s=30)
    assert claimed is not None and claimed.id == queued  # FIFO: the first one is running now
    queued, running = running, queued
    assert await queue.cancel(MODEL, queued) == "cancelled"
    assert await queue.cancel(MODEL, running) == "cancelled"
    assert (await queue.get(queued))["status"] == (await queue.get(running))["status"] == "cancelled"
    assert await queue.queue_len(MODEL) == 0 and await queue.inflight(MODEL) == 0
    assert await queue.pending(MODEL) == {}
    assert not await queue.renew(claimed, 30)  # the running attempt lost its lease: it can't finish
    assert await queue.finish(claimed, "done", {"logits": b""}) is None
    with pytest.raises(Conflict, match="already ended with status cancelled"):
        await queue.cancel(MODEL, queued)
    with pytest.raises(TaskNotFound):
        await queue.cancel(MODEL, "no-such-task")


async def test_a_finish_sent_again_by_its_attempt_gets_the_record_and_a_stale_one_nothing(
        queue: TaskQueue) -> None:
    """A finish retried after a timeout, its first copy having run, is not a stale result."""
    await _submit(queue)
    stale, _, _ = await queue.claim(MODEL, lease_s=0.05)
    assert stale is not None
    await asyncio.sleep(0.1)
    assert await queue.reap(MODEL) == 1
    current, _, _ = await queue.claim(MODEL, lease_s=30)
    assert current is not None
    first = await queue.finish(current, "done", {"logits": b"l"})
    again = await queue.finish(current, "done", {"logits": b"l"})
    assert first is not None and again is not None and again["finished"] == first["finished"]
    assert await queue.finish(stale, "done", {"logits": b"x"}) is None


async def test_finished_tasks_beyond_max_finished_are_deleted_oldest_first(queue: TaskQueue) -> None:
    ids = [await _submit(queue) for _ in range(8)]
    for _ in ids:
        task, _, _ = await queue.claim(MODEL, lease_s=30)
        assert task is not None
        assert await queue.finish(task, "done", {"logits": b"l"}) is not None
    assert await queue.trim() == 3
    for tid in ids[:3]:
        with pytest.raises(TaskNotFound):
            await queue.get(tid)
    assert [(await queue.get(t))["status"] for t in ids[3:]] == ["done"] * 5


async def test_a_queued_id_without_its_record_is_reported(queue: TaskQueue) -> None:
    lost, kept = await _submit(queue), await _submit(queue)
    await queue.r.delete(queue.key("task", lost))
    result = await queue.claim(MODEL, lease_s=30)
    assert result.orphans == [lost] and result.task is not None and result.task.id == kept


async def test_a_full_redis_refuses_submits_whole_and_still_moves_accepted_tasks(queue: TaskQueue) -> None:
    accepted = []
    with pytest.raises(Unavailable, match=r"(?i)oom|memory"):
        for _ in range(1000):  # 64 KB inputs: 4 MB fill up within ~60
            accepted.append(await _submit(queue, b"\0" * 65536))
    assert 10 < len(accepted) < 1000
    assert await queue.queue_len(MODEL) == len(accepted)  # the refused submit left nothing behind
    first, _, _ = await queue.claim(MODEL, lease_s=0.2)  # Redis is full, the task still moves on
    second, _, _ = await queue.claim(MODEL, lease_s=30)
    assert first is not None and second is not None
    assert await queue.renew(second, 30)
    assert await queue.finish(second, "done", {"logits": b"l"}) is not None
    await asyncio.sleep(0.3)
    assert await queue.reap(MODEL) == 1  # the first one's lease ran out: back in the queue, whole
    info = await queue.get(first.id)
    assert info["status"] == "queued" and await queue.inflight(MODEL) == 0
    assert await queue.cancel(MODEL, first.id) == "cancelled"
