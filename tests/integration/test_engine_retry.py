"""A failed step is retried without the executor that failed it, before its circuit opens.

A SIGKILLed executor's kept-alive connections fail one by one (``ServerDisconnected``), each one a
single failure of the breaker's three: a retry planned on "the executors up" went back to it and a
task could spend all its retries there (seen in CI). Two real executors, one slower than the slice
timeout; a real ``Engine``, ``PlanSource`` and ``ExecutorPool``. The merged map is checked against the
unsplit layers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from edgesplit.plan.cluster import cluster_from_dict
from edgesplit.plan.modes import whole_stage
from services.common.http import new_http_client
from services.executor.client import ExecutorClient
from services.orchestrator.engine import Engine, Job
from services.orchestrator.metrics import Metrics
from services.orchestrator.plans import PlanSource
from services.orchestrator.pool import ExecutorPool
from services.orchestrator.queue import Claimed
from services.orchestrator.routes import Route, rows_step
from services.orchestrator.settings import Mode
from tooling.proc import Spawner

pytestmark = [pytest.mark.services, pytest.mark.anyio]
SPEC = get_spec("digits-cnn")
MODULE = load_model(SPEC, seed=0)
TOKEN = "engine-retry-token-0123456789"
STOP = 2  # the step runs layers [0, 2)


@dataclass
class Rig:
    pool: ExecutorPool
    spawn: Spawner

    def engine(self, mode: Mode, max_retries: int) -> Engine:
        plans = PlanSource(SPEC, self.pool.cluster, self.pool, None, mode)  # type: ignore[arg-type]
        return Engine(SPEC, MODULE, self.pool, None, plans, Metrics(),  # type: ignore[arg-type]
                      max_retries=max_retries)


@pytest.fixture
async def rig(spawn: Spawner) -> AsyncIterator[Rig]:
    """Executor 0 answers at once; executor 1 takes 0.5 s a slice, past the pool's 0.2 s timeout."""
    fast = spawn.executor("fast", token=TOKEN, models=SPEC.name, threads=2)
    slow = spawn.executor("slow", token=TOKEN, models=SPEC.name, threads=2, slice_delay_s=0.5)
    cluster = cluster_from_dict({"executors": [{"name": "fast", "url": fast.url, "threads": 2},
                                               {"name": "slow", "url": slow.url, "threads": 2}],
                                 "cloud": {"url": fast.url}, "models": [SPEC.name]})
    http = new_http_client(5.0)
    pool = ExecutorPool(cluster, [ExecutorClient(s.url, TOKEN, 5.0, http=http) for s in cluster.servers],
                        slice_timeout_s=0.2, breaker_failures=3, breaker_window_s=30.0)
    yield Rig(pool, spawn)
    await http.aclose()


def _job(route: Route) -> tuple[Job, torch.Tensor]:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, *SPEC.input)).astype(np.float32))
    task = Claimed("t1", SPEC.name, 3, time.time(), time.time() + 60, 1, b"", "token")
    return Job(task, x, route, time.time()), MODULE[:STOP](x)


async def test_a_split_step_is_retried_without_the_executor_that_failed_it(rig: Rig) -> None:
    step = rows_step(SPEC, 0, STOP, [0, 1], [2, 2])
    job, want = _job(Route((step,), SPEC.n_edge))
    await rig.engine("split", max_retries=1).run_step(job, 0)
    assert rig.pool.down == set(), "one timeout must not open the circuit"
    assert job.retries == 1 and job.stages[0]["servers"] == [0]
    torch.testing.assert_close(job.x, want, rtol=1e-5, atol=1e-5)


async def test_a_whole_step_is_retried_on_another_executor(rig: Rig) -> None:
    engine = rig.engine("no-split", max_retries=1)
    whole = whole_stage(SPEC, STOP, 1, 2)  # no-split's step, on the slow executor
    job, want = _job(Route((whole,), STOP))
    await engine.run_step(job, 0)
    assert job.retries == 1 and job.stages[0]["servers"] == [0]
    torch.testing.assert_close(job.x, want, rtol=1e-5, atol=1e-5)


async def test_a_step_on_an_executor_marked_down_meanwhile_costs_no_retry(rig: Rig) -> None:
    """Another task's failure opened the circuit after this step was planned: nothing was sent, so
    the re-plan is free (it counted as one of the task's retries and failed it at max_retries=0)."""
    rig.pool.mark_down(1, "another task's failure")
    job, want = _job(Route((rows_step(SPEC, 0, STOP, [0, 1], [2, 2]),), SPEC.n_edge))
    await rig.engine("split", max_retries=0).run_step(job, 0)
    assert job.retries == 0 and job.stages[0]["servers"] == [0]
    torch.testing.assert_close(job.x, want, rtol=1e-5, atol=1e-5)
