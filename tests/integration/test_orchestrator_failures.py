"""No task is lost: an executor killed mid-run, the orchestrator killed and restarted, Redis gone.

Real processes throughout; a crash is a SIGKILL. Every task's logits are compared with the unsplit
model run here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from tooling.proc import free_port
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, RedisGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services, pytest.mark.slow]
SPEC = get_spec("digits-cnn")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=("digits-cnn",), split="paper", log_dir=tmp_path_factory.mktemp("failure-stack"),
            executor=ExecutorGroup(count=2, threads=2, extra={"slice_delay_s": 0.05}),
            orchestrator=OrchestratorGroup(extra={"lease_s": 2.0, "probe_interval_s": 0.2}))) as st:
        yield st


@pytest.fixture(scope="module")
def model() -> torch.nn.Sequential:
    return load_model(SPEC, seed=0)


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, *SPEC.input)).astype(np.float32) for _ in range(n)]


def _submit_all(c: httpx.Client, xs: list[np.ndarray]) -> list[str]:
    ids = []
    for x in xs:
        r = c.post("/v1/tasks", params={"model": "digits-cnn", "priority": 4, "timeout": 120},
                   content=wire.encode(x))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


def _wait_done_count(c: httpx.Client, ids: list[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while sum(c.get(f"/v1/tasks/{i}").json()["status"] == "done" for i in ids) < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _check_all_done(c: httpx.Client, ids: list[str], xs: list[np.ndarray],
                    model: torch.nn.Sequential) -> list[dict]:
    infos = [c.get(f"/v1/tasks/{i}", params={"wait": 60}).json() for i in ids]
    assert [i["status"] for i in infos] == ["done"] * len(ids), [(i["status"], i.get("error")) for i in infos]
    with torch.no_grad():
        for info, x in zip(infos, xs, strict=True):
            ref = model(torch.from_numpy(x))
            torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)
    return infos


def test_killed_executor_loses_no_task_and_comes_back(stack: LocalStack, model: torch.nn.Sequential) -> None:
    xs = _inputs(30, seed=10)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        ids = _submit_all(c, xs)
        _wait_done_count(c, ids, 3)
        stack.kill_executor(1)
        infos = _check_all_done(c, ids, xs, model)
        assert any(i["timings"]["retries"] > 0 or i["route"]["source"] == "replan" for i in infos)
        status = c.get("/v1/status").json()["executors"]
        assert [e["up"] for e in status] == [True, False] and status[1]["error"]
        stack.start_executor(1)
        deadline = time.monotonic() + 60
        while not all(e["up"] for e in c.get("/v1/status").json()["executors"]):
            assert time.monotonic() < deadline, "the restarted executor was never probed back"
            time.sleep(0.2)
        more = _inputs(4, seed=11)
        again = _check_all_done(c, _submit_all(c, more), more, model)
        assert {1} <= {m for i in again for st in i["timings"]["stages"] for m in st["servers"]}


def test_orchestrator_killed_mid_run_leaves_no_task_behind(stack: LocalStack,
                                                            model: torch.nn.Sequential) -> None:
    xs = _inputs(30, seed=20)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        ids = _submit_all(c, xs)
        _wait_done_count(c, ids, 5)
        stack.kill_orchestrator()  # SIGKILL: its running tasks keep their leases until they expire
        stack.restart_orchestrator()
        infos = _check_all_done(c, ids, xs, model)
    assert any(i["attempts"] > 1 for i in infos), "some task was running when the orchestrator died"


def test_redis_outage_gives_503_and_the_service_recovers(tmp_path: pytest.TempPathFactory) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # a private redis-server that this test can stop
    body = wire.encode(np.zeros((1, 8, 8), np.float32))
    with LocalStack(StackSettings(
            models=("digits-cnn",), log_dir=tmp_path, executor=ExecutorGroup(count=1, threads=2),
            redis=RedisGroup(url=url))) as st, \
            httpx.Client(base_url=st.url, timeout=30) as c:
        assert st.redis_proc is not None
        st.redis_proc.kill()
        st.redis_proc.wait(10)
        r = c.post("/v1/tasks", params={"model": "digits-cnn"}, content=body)
        assert r.status_code == 503 and "Redis" in r.json()["error"]
        assert c.get("/v2/health/ready").status_code == 503
        st._ensure_redis()  # redis-server back on the same port (empty)
        deadline = time.monotonic() + 30
        while (r := c.post("/v1/tasks", params={"model": "digits-cnn"}, content=body)).status_code == 503:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.2)
        assert r.status_code == 202
        info = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()
        assert info.get("status") == "done", info
