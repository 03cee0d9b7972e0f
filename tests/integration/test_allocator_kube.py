"""The allocator in Kubernetes mode: executor pods from a fake API server, real executors behind them.

No Kubernetes API server can run on these machines: the allocator's kubernetes client talks to
``tests/unit/fake_kube.py``, a small ``http.server`` app on a loopback port in this process that lists
and watches pods and records every ``pods/resize`` PATCH. The pods it lists point at two real executor
processes (pod IP 127.0.0.1, container port = the executor's port). The allocator app runs under a
real uvicorn server on a thread of this process (its Kubernetes client has to be the fake's).

Checked: executors discovered by label are planned on and get their quotas; a zone total different
from the pod's CPU limit is resized in place with the exact PATCH; a cluster refusing the resize (403)
leaves quota-only changes; a pod deleted is planned around.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from edgesplit.plan.cluster import cluster_from_dict, dump_cluster
from services.allocator.app import create_app
from services.allocator.kube import RESIZE_CONTENT_TYPE, KubeExecutors
from services.allocator.settings import AllocatorSettings
from tooling.proc import ServiceProcess, Spawner, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from fake_kube import FakeKube, fake_kube_server, make_pod

pytestmark = [pytest.mark.redis, pytest.mark.services]
TOKEN = "allocator-kube-token-0123456789"
REDIS = "redis://127.0.0.1:6379/0"
MODEL = "digits-cnn"
CLOUD = {"app.kubernetes.io/component": "cloud"}


@pytest.fixture(scope="module")
def executors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    spawner = Spawner(tmp_path_factory.mktemp("allocator-kube"))
    procs = [spawner.executor(f"executor-{i}", token=TOKEN, models=MODEL, threads=4) for i in range(2)]
    yield procs
    spawner.stop_all()


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < end, "the allocator did not start"
        time.sleep(0.05)
    return server, thread


@pytest.fixture
def kube_allocator(request: pytest.FixtureRequest, executors: list[ServiceProcess],
                   tmp_path: Path) -> Iterator[tuple[FakeKube, httpx.Client]]:
    """The allocator over the fake API server; ``request.param``: how the fake answers a resize.

    As with the Helm chart, a cluster file names the executors (the StatefulSet's pods) and gives
    their zone budget, 2 threads; the pods were deployed with 4 CPUs, so the allocator shrinks them.
    """
    prefix = f"test-kube-{uuid.uuid4().hex[:8]}:"
    dump_cluster(cluster_from_dict({"executors": [{"name": f"executor-{i}", "url": ex.url, "threads": 2}
                                                  for i, ex in enumerate(executors)], "models": [MODEL]}),
                 tmp_path / "cluster.yaml")
    with fake_kube_server() as (fake, url):
        for i, ex in enumerate(executors):
            fake.add(make_pod(f"executor-{i}", "127.0.0.1", cpu="4", port=ex.port), event=False)
        fake.add(make_pod("cloud-0", "127.0.0.1", labels=CLOUD), event=False)
        fake.resize_status = getattr(request, "param", 200)
        settings = AllocatorSettings(kubernetes=True, namespace="edge", redis_url=REDIS, prefix=prefix,
                                     token=TOKEN, cluster_file=tmp_path / "cluster.yaml", policy="exact",
                                     period_s=0.5, measure_s=0.2)
        kube = KubeExecutors(fake.api(url), "edge", settings.executor_selector, watch_timeout_s=1)
        port = free_port()
        server, thread = _serve(create_app(settings, kube=kube), port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                yield fake, client
        finally:
            server.should_exit = True
            thread.join(20)
            r = redis.Redis.from_url(REDIS)
            for key in r.scan_iter(match=f"{prefix}*"):
                r.delete(key)


def _until(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout_s
    while not (got := check()):
        assert time.monotonic() < end, f"{what} not met within {timeout_s} s"
        time.sleep(0.1)
    return got


def _quota_total(ex: ServiceProcess) -> int:
    q = httpx.get(f"{ex.url}/v1/quotas", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return sum(sum(v.values()) for v in q.values())


def _plan_total(plan: dict[str, Any], name: str) -> int:
    m = plan["server_names"].index(name)
    return sum(k for st in plan["stages"] for s, k in zip(st["servers"], st["threads"], strict=True)
               if s == m)


def test_discovered_pods_are_planned_and_resized(kube_allocator: tuple[FakeKube, httpx.Client],
                                                 executors: list[ServiceProcess]) -> None:
    fake, c = kube_allocator
    plan = _until(lambda: c.get(f"/v1/plan/{MODEL}").json() if c.get(f"/v1/plan/{MODEL}").status_code == 200
                  else None, what="a plan")
    assert plan["server_names"] == ["executor-0", "executor-1"]  # the cloud pod is not an executor
    for i, ex in enumerate(executors):
        name = f"executor-{i}"
        total = _plan_total(plan, name)
        if total == 0:
            continue
        _until(lambda ex=ex, total=total: _quota_total(ex) == total, what=f"{name} quotas")
        path = f"/api/v1/namespaces/edge/pods/{name}/resize"
        patch = _until(lambda path=path: next((p for p in fake.patches if p["path"] == path), None),
                       what=f"a resize of {name}")
        assert patch["content_type"] == RESIZE_CONTENT_TYPE
        cpu = str(max(1, total))
        assert patch["body"] == {"spec": {"containers": [{"name": "executor", "resources": {
            "limits": {"cpu": cpu}, "requests": {"cpu": cpu}}}]}}
    resizes = [r for d in c.get("/v1/decisions").json()["decisions"] for r in d["resizes"]]
    assert resizes and all(r["status"] == "resized" for r in resizes)


@pytest.mark.parametrize("kube_allocator", [403, 422], indirect=True)
def test_refused_resize_falls_back_to_quotas(kube_allocator: tuple[FakeKube, httpx.Client],
                                            executors: list[ServiceProcess]) -> None:
    fake, c = kube_allocator
    plan = _until(lambda: c.get(f"/v1/plan/{MODEL}").json() if c.get(f"/v1/plan/{MODEL}").status_code == 200
                  else None, what="a plan")
    used = [i for i in range(2) if _plan_total(plan, f"executor-{i}")]
    for i in used:
        total = _plan_total(plan, f"executor-{i}")
        _until(lambda i=i, total=total: _quota_total(executors[i]) == total, what="quotas despite the 403")
    _until(lambda: len(fake.patches) >= len(used), what="resize attempts")
    time.sleep(1.0)  # several more rounds: a refusing pod is not asked again
    assert sorted(p["path"] for p in fake.patches) == sorted(
        f"/api/v1/namespaces/edge/pods/executor-{i}/resize" for i in used)
    resizes = [r for d in c.get("/v1/decisions").json()["decisions"] for r in d["resizes"]]
    assert {r["status"] for r in resizes} == {"refused"}
    assert {r["http_status"] for r in resizes} == {fake.resize_status}


def test_deleted_pod_is_planned_around(kube_allocator: tuple[FakeKube, httpx.Client],
                                      executors: list[ServiceProcess]) -> None:
    fake, c = kube_allocator
    _until(lambda: c.get(f"/v1/plan/{MODEL}").status_code == 200, what="a plan")
    fake.delete("executor-1")  # its process still answers: the pod is what counts

    def without() -> dict[str, Any] | None:
        ds = c.get("/v1/decisions").json()["decisions"]
        return next((d for d in reversed(ds) if d["excluded"] == ["executor-1"]), None)

    d = _until(without, what="a decision without executor-1")
    assert "executor-1 down" in d["trigger"] and d["units"]["executor-1"] == 0
    plan = c.get(f"/v1/plan/{MODEL}").json()
    assert plan["server_names"] == ["executor-0", "executor-1"]  # the file's order: plan indices hold
    assert all(st["servers"] == [0] for st in plan["stages"])
    fake.add(make_pod("executor-1", "127.0.0.1", cpu="4", port=executors[1].port))
    _until(lambda: any("executor-1 back" in d["trigger"] and not d["excluded"]
                       for d in c.get("/v1/decisions").json()["decisions"]), what="a re-plan with executor-1")
