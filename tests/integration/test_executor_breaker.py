"""The orchestrator's circuit breaker against a real executor: one timeout does not mark it down,
``breaker_failures`` within the window do, and after ``breaker_open_s`` one ready probe closes the
circuit again (half-open). A slow executor is made by ``slice_delay_s`` above the slice timeout."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edgesplit.models import get_spec
from edgesplit.plan.cluster import cluster_from_dict
from edgesplit.split import make_slices
from services.common.http import new_http_client
from services.executor.client import ExecutorClient
from services.orchestrator.pool import ExecutorFailed, ExecutorPool
from tooling.proc import Spawner

pytestmark = [pytest.mark.services, pytest.mark.anyio]
SPEC = get_spec("digits-cnn")
SLICE = make_slices(SPEC, 0, 2, "rows", [8])[0]
X = np.ones(SLICE.in_shape(SPEC, 1), np.float32)
TOKEN = "breaker-test-token-0123456789"


async def test_three_timeouts_open_the_circuit_and_a_probe_closes_it(spawn: Spawner) -> None:
    ex = spawn.executor("slow", token=TOKEN, models="digits-cnn", threads=2, slice_delay_s=0.5)
    cluster = cluster_from_dict({"executors": [{"name": "slow", "url": ex.url, "threads": 2}],
                                 "cloud": {"url": ex.url}, "models": ["digits-cnn"]})
    http = new_http_client(5.0)
    pool = ExecutorPool(cluster, [ExecutorClient(ex.url, TOKEN, 5.0, http=http)], slice_timeout_s=0.2,
                        breaker_failures=3, breaker_window_s=30.0, breaker_open_s=0.5)
    try:
        for attempt in range(3):
            assert pool.down == set(), f"down after {attempt} failure(s)"
            with pytest.raises(ExecutorFailed):
                await pool.run(0, "digits-cnn", SLICE, X, 0, "t")
        assert pool.down == {0} and "3 failures" in pool.failures[0]
        with pytest.raises(ExecutorFailed, match="marked down"):  # open: no call is even sent
            await pool.run(0, "digits-cnn", SLICE, X, 1, "t")
        assert await pool.probe_once() == []  # still within breaker_open_s
        await asyncio.sleep(0.6)
        assert await pool.probe_once() == [0]  # half-open: the executor answers ready, closed again
        pool.slice_timeout_s = 5.0
        out, _, _ = await pool.run(0, "digits-cnn", SLICE, X, 0, "t")
        assert out.output.shape == SLICE.out_shape(SPEC, 1)
    finally:
        await http.aclose()
