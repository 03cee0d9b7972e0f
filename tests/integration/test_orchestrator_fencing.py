"""Fenced attempts against a real redis-server: a re-claimed task's stale attempt cannot disturb the
current one, cannot finish it, and its late result is dropped and counted.

The runner here is the orchestrator's own (``AsyncPipeline`` over a real ``Engine``, ``PlanSource`` and
``ExecutorPool``); its one executor listens nowhere, so the stale attempt's stage fails as a killed
executor's would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis.asyncio as aioredis

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from edgesplit.plan.cluster import cluster_from_dict
from services.common.http import new_http_client
from services.executor.client import ExecutorClient
from services.orchestrator.engine import Engine, Job
from services.orchestrator.metrics import Metrics
from services.orchestrator.pipeline import AsyncPipeline
from services.orchestrator.plans import PlanSource
from services.orchestrator.pool import ExecutorPool
from services.orchestrator.queue import TaskQueue
from services.orchestrator.settings import OrchestratorSettings
from tooling.proc import free_port

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
URL = "redis://127.0.0.1:6379/0"
MODEL = "digits-cnn"
LEASE_S = 1.0


@pytest.fixture
async def runner() -> AsyncIterator[AsyncPipeline]:
    spec = get_spec(MODEL)
    nowhere = f"http://127.0.0.1:{free_port()}"
    cluster = cluster_from_dict({"executors": [{"name": "e0", "url": nowhere, "threads": 2}],
                                 "cloud": {"url": nowhere}, "models": [MODEL]})
    http = new_http_client(2.0)
    pool = ExecutorPool(cluster, [ExecutorClient(nowhere, None, 2.0, http=http)], 2.0)
    client = aioredis.Redis.from_url(URL)
    queue = TaskQueue(client, prefix=f"test:{uuid.uuid4().hex[:8]}:", result_ttl_s=60, max_attempts=5)
    settings = OrchestratorSettings(models=[MODEL], lease_s=LEASE_S, reap_interval_s=0.1,  # type: ignore[call-arg]
                                    max_retries=0, workers=False)
    plans = PlanSource(spec, cluster, pool, queue, "split")
    metrics = Metrics()
    engine = Engine(spec, load_model(spec, seed=0), pool, None, plans, metrics,  # type: ignore[arg-type]
                    max_retries=0)
    yield AsyncPipeline(engine, queue, plans, settings, metrics)
    await queue.purge()
    await client.aclose()
    await http.aclose()


async def _reclaimed(runner: AsyncPipeline) -> tuple[Job, Job]:
    """A task claimed, its lease left to expire and reaped, then claimed again: (stale, current)."""
    q = runner.queue
    await q.submit(MODEL, wire.encode(np.zeros((1, 1, 8, 8), np.float32)), 3, 60, max_queue=10)
    stale = await runner.claim(block=False)
    assert stale is not None
    await asyncio.sleep(LEASE_S + 0.1)
    assert await q.reap(MODEL) == 1
    current = await runner.claim(block=False)
    assert current is not None and current.task.id == stale.task.id
    assert current.task.token != stale.task.token
    return stale, current


async def test_a_stale_attempt_ending_leaves_the_current_attempt_renewing(runner: AsyncPipeline) -> None:
    """The race of ``Runner.active[task_id]``: the stale attempt's end must not stop the renewal of the
    current one (it did: the current attempt then lost its lease and the task ran a third time)."""
    q = runner.queue
    stale, current = await _reclaimed(runner)
    assert not await runner.step(stale, 0)  # its executor is gone: the stale attempt ends, failed
    renewing = asyncio.create_task(runner.renew_forever())
    try:
        await asyncio.sleep(3 * LEASE_S)  # three leases: without renewal the lease is long gone
        assert await q.reap(MODEL) == 0, "the current attempt's lease expired: it was not renewed"
        record = await q.finish(current.task, "done", {"logits": b""})
    finally:
        renewing.cancel()
    assert record is not None and record["status"] == "done" and record["attempts"] == "2"


async def test_a_stale_attempt_cannot_finish_and_its_result_is_counted(runner: AsyncPipeline) -> None:
    q = runner.queue
    stale, current = await _reclaimed(runner)
    assert not await runner.step(stale, 0)
    info = await q.get(stale.task.id)
    assert info["status"] == "running", "the stale attempt's failure must not end the task"
    stale_count = runner.metrics.stale.labels(MODEL)._value.get()
    assert stale_count == 1
    record = await q.finish(current.task, "done", {"logits": b""})
    assert record is not None and record["status"] == "done"
