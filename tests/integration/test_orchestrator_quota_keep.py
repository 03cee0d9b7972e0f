"""An executor going down and coming back makes the orchestrator re-push its quotas; the quotas of
models it does not plan (here set as the allocator service would) survive that on every executor."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgesplit import wire
from services.executor.client import ExecutorClient
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
OURS, THEIRS = "digits-cnn", "alexnet-paper"
BODY = wire.encode(np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32))


def _quotas(stack: LocalStack, i: int, put: dict[str, dict[int, int]] | None = None
            ) -> dict[str, dict[int, int]]:
    async def go() -> dict[str, dict[int, int]]:
        async with ExecutorClient(f"http://127.0.0.1:{stack.exec_ports[i]}", stack.token) as ex:
            return await (ex.get_quotas() if put is None else ex.put_quotas(put))

    return asyncio.run(go())


def test_an_executor_restart_keeps_the_quotas_of_models_planned_elsewhere(tmp_path: Path) -> None:
    # the executors deploy both models and have 2 threads more than the orchestrator plans with;
    # the orchestrator serves (and plans) only OURS
    # separate machines (shared_host=False): the plan uses both executors, so a slice fails on the dead one
    with LocalStack(StackSettings(
            models=(OURS, THEIRS), log_dir=tmp_path, shared_host=False,
            executor=ExecutorGroup(count=2, threads=2, extra={"threads": 4}),
            orchestrator=OrchestratorGroup(extra={"models": OURS}))) as st, \
            httpx.Client(base_url=st.url, timeout=30) as c:
        mine = _quotas(st, 0)[OURS]
        theirs = {0: 1}
        for i in (0, 1):  # what the allocator service would add for its model
            _quotas(st, i, {**_quotas(st, i), THEIRS: theirs})
        st.kill_executor(1)
        deadline = time.monotonic() + 30
        while c.get("/v1/status").json()["executors"][1]["up"]:  # a failed slice marks it down
            assert time.monotonic() < deadline, "executor 1 was never seen down"
            r = c.post("/v1/tasks", params={"model": OURS, "priority": 1}, content=BODY)
            assert c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()["status"] == "done"
        st.start_executor(1)
        deadline = time.monotonic() + 60
        while OURS not in (table := _quotas_or_empty(st, 1)):  # pushed once it is seen up again
            assert time.monotonic() < deadline, f"the orchestrator never set executor 1's quotas: {table}"
            time.sleep(0.2)
        assert _quotas(st, 0) == {OURS: mine, THEIRS: theirs}  # pushed on both changes, THEIRS kept


def _quotas_or_empty(stack: LocalStack, i: int) -> dict[str, dict[int, int]]:
    try:
        return _quotas(stack, i)
    except Exception:  # still starting
        return {}
