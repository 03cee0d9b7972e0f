"""The allocator re-planning a real local stack (redis, cloud, 3 executors, orchestrator, allocator).

``digits-cnn`` on 3 executors of 2 threads. One executor is made slower (restarted with a per-slice
delay of 50 ms, the executors' fault injection): the allocator sees its measured speed fall and
gives it fewer rows, within 3 of its periods after the executor is back (counted in the allocator's
own periodic re-plans, so a stalled machine does not make the test flaky); the latency before and
after is printed, not asserted (it is reported by ``edgesplit bench adapt``). Then an executor is
killed (re-plan without it) and brought back (re-plan with it). Every task's logits equal those of
the unsplit torch model throughout.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from services.common.models import load_part
from tooling.proc import ServiceProcess, start_module, wait_ready
from tooling.stack import ExecutorGroup, LocalStack, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services, pytest.mark.slow]
MODEL = "digits-cnn"
PERIOD_S = 1.0
DELAY_S = 0.05
RNG = np.random.default_rng(0)
INPUTS = [RNG.standard_normal((1, 8, 8)).astype(np.float32) for _ in range(4)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, ServiceProcess]]:
    log_dir = tmp_path_factory.mktemp("allocator-stack")
    # separate machines (shared_host=False): plans spread over the executors, as in a cluster
    with LocalStack(StackSettings(
            models=(MODEL,), log_dir=log_dir, shared_host=False,
            executor=ExecutorGroup(count=3, threads=2))) as st:
        alloc = start_module("allocator", "services.allocator", "EDGESPLIT_ALLOCATOR_", {
            "redis_url": st.redis_url, "prefix": st.prefix, "cluster_file": st.cluster_path,
            "token": st.token, "models": MODEL, "period_s": PERIOD_S, "measure_s": 0.25}, log_dir)
        try:
            yield st, alloc
        finally:
            alloc.stop()


@pytest.fixture(scope="module")
def reference() -> list[torch.Tensor]:
    module = load_part(get_spec(MODEL), "all", None, 0).module
    with torch.no_grad():
        return [module(torch.from_numpy(x[None])) for x in INPUTS]


def _run(c: httpx.Client, reference: list[torch.Tensor], n: int) -> list[dict[str, Any]]:
    """n tasks one after another; each must finish with the unsplit model's logits."""
    out = []
    for k in range(n):
        j = k % len(INPUTS)
        r = c.post("/v1/tasks", params={"model": MODEL, "priority": 1}, content=wire.encode(INPUTS[j]))
        assert r.status_code == 202, r.text
        info = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 60}).json()
        assert info["status"] == "done", info
        torch.testing.assert_close(torch.tensor(info["logits"]).reshape(1, -1), reference[j])
        out.append(info)
    return out


def _median_ms(tasks: list[dict[str, Any]]) -> float:
    return 1e3 * statistics.median(t["e2e_s"] for t in tasks)


def _allocator(st: LocalStack, alloc: ServiceProcess) -> httpx.Client:
    return httpx.Client(base_url=alloc.url, headers={"Authorization": f"Bearer {st.token}"}, timeout=30)


def _decisions(a: httpx.Client, after: float = 0.0) -> list[dict[str, Any]]:
    found = a.get("/v1/decisions", params={"limit": 1000}).json()["decisions"]
    return [d for d in found if d["time"] > after]


def _until(check: Callable[[], Any], work: Callable[[], object], timeout_s: float, what: str) -> Any:
    """Keep the stack busy with ``work`` until ``check`` holds."""
    end = time.monotonic() + timeout_s
    while not (got := check()):
        assert time.monotonic() < end, f"{what} not seen within {timeout_s} s"
        work()
    return got


def test_slow_executor_gets_fewer_rows(env: tuple[LocalStack, ServiceProcess],
                                       reference: list[torch.Tensor]) -> None:
    st, alloc = env
    with httpx.Client(base_url=st.url, timeout=60) as c, _allocator(st, alloc) as a:
        _until(lambda: any(t["route"]["source"] == "redis" for t in _run(c, reference, 4)), lambda: None, 120,
               "a task on the allocator's plan")
        _run(c, reference, 10)  # let every executor be measured
        before = _run(c, reference, 20)
        units = a.get(f"/v1/plan/{MODEL}").json()
        plan_units = _decisions(a)[-1]["units"]
        slow = max(plan_units, key=plan_units.get)
        assert plan_units[slow] > 0, units
        index = int(slow.rsplit("-", 1)[1])
        st.extra_exec = {"slice_delay_s": DELAY_S}
        st.kill_executor(index)
        wait_ready(st.start_executor(index))
        back = time.time()

        def shifted() -> dict[str, Any] | None:
            return next((d for d in _decisions(a, back) if slow not in d["excluded"] and d["published"]
                         and d["units"][slow] < plan_units[slow] and
                         d["measured"][slow]["flops_per_thread"] < min(
                             v["flops_per_thread"] for n, v in d["measured"].items() if n != slow)), None)

        shift = _until(shifted, lambda: _run(c, reference, 2), 120, f"a plan giving {slow} fewer rows")
        periods = [d for d in _decisions(a, back) if d["id"] <= shift["id"] and "period" in d["trigger"]]
        assert len(periods) <= 3, [d["trigger"] for d in _decisions(a, back) if d["id"] <= shift["id"]]
        after = _run(c, reference, 20)
        print(f"\n{slow}: {plan_units[slow]} -> {shift['units'][slow]} units; trigger {shift['trigger']!r}; "
              f"{len(periods)} periodic re-plans in between; {time.time() - back:.1f} s after it was back; "
              f"median e2e before {_median_ms(before):.1f} ms, after {_median_ms(after):.1f} ms")


def test_executor_killed_then_back(env: tuple[LocalStack, ServiceProcess],
                                   reference: list[torch.Tensor]) -> None:
    st, alloc = env
    with httpx.Client(base_url=st.url, timeout=60) as c, _allocator(st, alloc) as a:
        st.extra_exec = {}
        t0 = time.time()
        st.kill_executor(2)

        def without() -> dict[str, Any] | None:
            return next((d for d in _decisions(a, t0) if d["excluded"] == ["executor-2"]), None)

        d = _until(without, lambda: _run(c, reference, 2), 60, "a re-plan without executor-2")
        assert d["units"]["executor-2"] == 0
        plan = a.get(f"/v1/plan/{MODEL}").json()
        assert all(2 not in s["servers"] for s in plan["stages"])
        _run(c, reference, 10)
        t1 = time.time()
        wait_ready(st.start_executor(2))

        def with_it() -> dict[str, Any] | None:
            return next((d for d in _decisions(a, t1) if "executor-2 back" in d["trigger"]), None)

        d = _until(with_it, lambda: _run(c, reference, 2), 60, "a re-plan with executor-2")
        assert d["excluded"] == [] and d["published"]
        _run(c, reference, 10)
