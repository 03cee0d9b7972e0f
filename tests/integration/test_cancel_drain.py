"""Cancellation, draining and supervised loops of a real orchestrator.

A stack with one executor whose every slice takes 3 s more (``slice_delay_s``), so that a task is
still running, and others still queued, when the test acts on them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgesplit import wire
from services.orchestrator.service import LOOP_FAILURES_DEAD, Orchestrator
from services.orchestrator.settings import OrchestratorSettings
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
BODY = wire.encode(np.zeros((1, 1, 8, 8), np.float32))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=("digits-cnn",), log_dir=tmp_path_factory.mktemp("cancel-stack"),
            executor=ExecutorGroup(count=1, threads=2, extra={"slice_delay_s": 3.0}),
            orchestrator=OrchestratorGroup(extra={"drain_s": 20.0}))) as st:
        yield st


def _submit(c: httpx.Client) -> str:
    r = c.post("/v1/tasks", params={"model": "digits-cnn", "timeout": 120}, content=BODY)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _status(c: httpx.Client, tid: str) -> dict:
    info: dict = c.get(f"/v1/tasks/{tid}", params={"logits": False}).json()
    return info


def _wait_status(c: httpx.Client, tid: str, status: str) -> None:
    deadline = time.monotonic() + 60
    while _status(c, tid)["status"] != status:
        assert time.monotonic() < deadline, _status(c, tid)
        time.sleep(0.02)


def _executor_counter(st: LocalStack, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{st.exec_ports[0]}/metrics",
                     headers={"Authorization": f"Bearer {st.token}"}).text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def test_delete_cancels_a_running_and_a_queued_task(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        running, middle, queued = _submit(c), _submit(c), _submit(c)
        _wait_status(c, running, "running")
        before = _executor_counter(stack, "edgesplit_executor_slices_cancelled_total")
        for tid in (running, queued):
            r = c.delete(f"/v1/tasks/{tid}")
            assert r.status_code == 200 and r.json() == {"id": tid, "status": "cancelled"}, r.text
        assert c.delete(f"/v1/tasks/{queued}").status_code == 409  # already ended
        assert c.delete("/v1/tasks/no-such-task").status_code == 404
        done = c.get(f"/v1/tasks/{middle}", params={"wait": 60, "logits": False}).json()
        assert done["status"] == "done"
        time.sleep(3.5)  # the cancelled attempt's slice would have ended by now
        for tid in (running, queued):
            info = _status(c, tid)
            assert info["status"] == "cancelled" and "logits" not in info and "top_k" not in info
    # the running task's slice, waiting out its delay in the executor, was cancelled there
    assert _executor_counter(stack, "edgesplit_executor_slices_cancelled_total") == before + 1


def test_a_v2_request_that_times_out_cancels_its_task(stack: LocalStack) -> None:
    """Triton's ``timeout`` (microseconds): 0.5 s, while the task's first slice alone takes 3 s."""
    payload = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}],
               "parameters": {"timeout": 500_000}}
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        r = c.post("/v2/models/digits-cnn/infer", json=payload)
        assert r.status_code == 504, r.text
        match = re.search(r"task (\w+) did not finish", r.json()["error"])
        assert match, r.text
        info = _status(c, match.group(1))
    assert info["status"] == "cancelled" and "top_k" not in info


def test_sigterm_drains_the_running_task_and_leaves_the_queue_alone(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        running, *waiting = (_submit(c) for _ in range(3))
        _wait_status(c, running, "running")
        assert stack.orch is not None
        stack.orch.stop(60)  # SIGTERM: drain, then exit
        stopped_at = time.time()
        stack.restart_orchestrator()
        finished = c.get(f"/v1/tasks/{running}", params={"wait": 60, "logits": False}).json()
        assert finished["status"] == "done" and finished["attempts"] == 1  # finished while draining
        assert finished["finished"] < stopped_at
        later = [c.get(f"/v1/tasks/{t}", params={"wait": 60, "logits": False}).json() for t in waiting]
    assert [i["status"] for i in later] == ["done", "done"]
    assert all(i["started"] > stopped_at for i in later), "nothing new was claimed while draining"


@pytest.mark.anyio
async def test_a_failing_background_loop_is_restarted_and_then_fails_liveness(tmp_path: Path) -> None:
    settings = OrchestratorSettings(models=["digits-cnn"], workers=False, prefix="live-test:")  # type: ignore[call-arg]
    orch = Orchestrator(settings)
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    orch._loop("broken", broken)
    assert orch.not_live() is None
    deadline = time.monotonic() + 30
    while orch.not_live() is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert calls == LOOP_FAILURES_DEAD and "broken" in str(orch.not_live())
    assert orch.metrics.loop_restarts.labels("broken")._value.get() == LOOP_FAILURES_DEAD
    await orch.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
