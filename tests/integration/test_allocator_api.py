"""The allocator as a real process over two real executors and Redis (no orchestrator needed).

Checks the API (health, tokens, plans, decisions, re-plan), that the quotas of every executor follow
the published plan and are put back when someone else changes them, that an executor killed is
planned around and one brought back is planned with again, and that the slice records of the Redis
stream ``xfer:{executor}`` become the measured link.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from edgesplit.models import get_spec
from edgesplit.plan.cluster import cluster_from_dict, dump_cluster
from edgesplit.plan.planner import Plan
from services.allocator.executors import plan_quotas
from services.common.channels import plan_key, xfer_stream
from tooling.proc import ServiceProcess, free_port, spawn, start_module, wait_ready

pytestmark = [pytest.mark.redis, pytest.mark.services]
TOKEN = "allocator-test-token-0123456789"
ADMIN = "allocator-admin-token-0123456789"
REDIS = "redis://127.0.0.1:6379/0"
MODEL = "digits-cnn"


class Setup:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.ports = [free_port(), free_port()]
        self.prefix = f"test-alloc-{uuid.uuid4().hex[:8]}:"
        self.executors: list[ServiceProcess] = []
        self.allocator: ServiceProcess | None = None
        self.cluster = log_dir / "cluster.yaml"

    def start_executor(self, i: int) -> ServiceProcess:
        env = {"EDGESPLIT_EXECUTOR_PORT": str(self.ports[i]), "EDGESPLIT_EXECUTOR_NAME": f"executor-{i}",
               "EDGESPLIT_EXECUTOR_TOKEN": TOKEN, "EDGESPLIT_EXECUTOR_MODELS": MODEL,
               "EDGESPLIT_EXECUTOR_THREADS": "4"}
        argv = [sys.executable, "-m", "services.executor"]
        svc = spawn(f"executor-{i}", argv, env, self.ports[i], self.log_dir)
        wait_ready(svc)
        return svc


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    s = Setup(tmp_path_factory.mktemp("allocator-api"))
    s.executors = [s.start_executor(i) for i in range(2)]
    dump_cluster(cluster_from_dict({
        "executors": [{"name": f"executor-{i}", "url": f"http://127.0.0.1:{p}", "threads": 4,
                       "link_bps": 1e10, "overhead_s": 1e-3} for i, p in enumerate(s.ports)],
        "models": [MODEL]}), s.cluster)
    try:
        s.allocator = start_module("allocator", "services.allocator", "EDGESPLIT_ALLOCATOR_", {
            "redis_url": REDIS, "prefix": s.prefix, "cluster_file": s.cluster, "token": TOKEN,
            "admin_token": ADMIN, "policy": "exact", "period_s": 0.5, "measure_s": 0.2}, s.log_dir)
        yield s
    finally:
        for svc in [*s.executors, *([s.allocator] if s.allocator else [])]:
            svc.stop()
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=f"{s.prefix}*"):
            client.delete(key)


def _client(setup: Setup, token: str | None = TOKEN) -> httpx.Client:
    assert setup.allocator is not None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=setup.allocator.url, headers=headers, timeout=30)


def _until(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, f"{what} not met within {timeout_s} s"
        time.sleep(0.1)


def _executor_quotas(setup: Setup, i: int) -> dict[str, dict[int, int]]:
    raw = httpx.get(f"http://127.0.0.1:{setup.ports[i]}/v1/quotas",
                    headers={"Authorization": f"Bearer {TOKEN}"})
    return {m: {int(k): v for k, v in q.items()} for m, q in raw.json().items() if q}


def test_health_and_tokens(setup: Setup) -> None:
    with _client(setup, None) as c:
        assert c.get("/v2/health/live").status_code == 200
        _until(lambda: c.get("/v2/health/ready").status_code == 200, what="ready")
        assert c.get("/metrics").status_code == 401
        assert c.get(f"/v1/plan/{MODEL}").status_code == 401
        assert c.post("/v1/replan").status_code == 401
    with _client(setup, "wrong-token-0123456789") as c:
        assert c.get("/v1/decisions").status_code == 401
    with _client(setup) as c:
        r = c.post("/v1/replan")
        assert r.status_code == 403 and "admin token" in r.json()["error"]
        assert c.get("/v1/plan/resnet").status_code == 404
        assert "edgesplit_allocator_served_total" in c.get("/metrics").text


def test_plan_is_published_and_quotas_follow_it(setup: Setup) -> None:
    with _client(setup) as c:
        def published() -> dict[str, Any] | None:
            r = c.get(f"/v1/plan/{MODEL}")
            return r.json() if r.status_code == 200 else None

        raw = _until(published, what="a plan")
    plan = Plan.from_dict(raw)
    plan.validate(get_spec(MODEL), 2)
    stored = json.loads(redis.Redis.from_url(REDIS).get(plan_key(setup.prefix, MODEL)) or b"{}")
    assert stored["version"] >= plan.version >= 1
    assert stored["source"] == "allocator" and stored["served"] == "exact"
    want = plan_quotas({MODEL: Plan.from_dict(stored)}, ["executor-0", "executor-1"])
    for i in range(2):
        wanted = {m: q for m, q in want[f"executor-{i}"].items() if q}
        _until(lambda i=i, wanted=wanted: _executor_quotas(setup, i) == wanted, what=f"executor-{i} quotas")


def test_admin_replan_records_decisions(setup: Setup) -> None:
    with _client(setup, ADMIN) as c:
        r = c.post("/v1/replan")
        assert r.status_code == 200, r.text
        (d,) = r.json()["decisions"]
        assert (d["model"], d["trigger"], d["served"], d["excluded"]) == (MODEL, "admin", "exact", [])
        assert d["lower_bound_s"] <= d["objective_s"]
        found = c.get("/v1/decisions", params={"model": MODEL, "limit": 5}).json()["decisions"]
        assert found[-1]["id"] == d["id"] and len(found) <= 5
        metrics = c.get("/metrics").text
    assert 'edgesplit_allocator_served_total{model="digits-cnn",served="exact"}' in metrics


def _puts(c: httpx.Client) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith('edgesplit_allocator_quota_updates_total{executor="executor-1",result="ok"}'):
            return float(line.split()[-1])
    return 0.0


def test_quotas_changed_by_someone_else_are_put_back(setup: Setup) -> None:
    _until(lambda: _executor_quotas(setup, 1), what="quotas")
    with _client(setup) as c:
        puts = _puts(c)
        httpx.put(f"http://127.0.0.1:{setup.ports[1]}/v1/quotas", json={MODEL: {"0": 1, "1": 1, "2": 1}},
                  headers={"Authorization": f"Bearer {TOKEN}"}).raise_for_status()
        plan = Plan.from_dict(c.get(f"/v1/plan/{MODEL}").json())
        want = plan_quotas({MODEL: plan}, ["executor-0", "executor-1"])["executor-1"]
        _until(lambda: _executor_quotas(setup, 1) == {m: q for m, q in want.items() if q}, what="quotas back")
        assert _puts(c) > puts


def test_link_measured_from_the_transfer_stream(setup: Setup) -> None:
    r = redis.Redis.from_url(REDIS)
    for b in range(1000, 21000, 1000):
        r.xadd(xfer_stream(setup.prefix, "executor-0"), {"bytes": b, "transfer_s": 1e-3 + 8 * b / 2e9})
    with _client(setup) as c:
        def link() -> float | None:
            ex = {e["name"]: e for e in c.get("/v1/measurements").json()["executors"]}
            return ex["executor-0"]["slices"]["link_bps"]
        rate = _until(link, what="a measured link")
    assert abs(rate / 2e9 - 1) < 1e-6


def test_executor_killed_then_back(setup: Setup) -> None:
    with _client(setup) as c:
        setup.executors[0].proc.kill()
        setup.executors[0].proc.wait(10)

        def without() -> dict[str, Any] | None:
            ds = c.get("/v1/decisions", params={"limit": 5}).json()["decisions"]
            return next((d for d in reversed(ds) if d["excluded"] == ["executor-0"]), None)

        d = _until(without, what="a decision without executor-0")
        assert "executor-0 down" in d["trigger"] and d["units"]["executor-0"] == 0
        plan = Plan.from_dict(c.get(f"/v1/plan/{MODEL}").json())
        assert all(0 not in st.servers for st in plan.stages)
        setup.executors[0] = setup.start_executor(0)

        def back() -> dict[str, Any] | None:
            ds = c.get("/v1/decisions", params={"limit": 5}).json()["decisions"]
            return next((d for d in reversed(ds) if "executor-0 back" in d["trigger"]), None)

        d = _until(back, what="a decision with executor-0 back")
        assert d["excluded"] == [] and d["published"]
