"""The allocator's Kubernetes calls against a fake API server over HTTP.

No Kubernetes API server can run on these machines: these tests run the real kubernetes python client
against ``fake_kube``, a small ``http.server`` app on a loopback port in this process that answers
list/watch of pods and records every ``pods/resize`` PATCH (path, content type, body). They check the
discovery by label, the watch (pods coming and going), the exact resize PATCH and the fallback to
quota-only changes when the cluster answers 403 or 422.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fake_kube import FakeKube, fake_kube_server, make_pod

from services.allocator.kube import RESIZE_CONTENT_TYPE, KubeExecutors, parse_cpu, resize_body

SELECTOR = "app.kubernetes.io/component=executor"
OTHER = {"app.kubernetes.io/component": "orchestrator"}


@pytest.fixture
def fake() -> Iterator[tuple[FakeKube, KubeExecutors]]:
    with fake_kube_server() as (state, url):
        state.add(make_pod("ex-a", "10.0.0.1", cpu="4"), event=False)
        state.add(make_pod("ex-b", "10.0.0.2", cpu="2500m", ready=False, port=9000), event=False)
        state.add(make_pod("orchestrator-0", "10.0.0.9", labels=OTHER), event=False)
        kube = KubeExecutors(state.api(url), "edge", SELECTOR, container="executor", port=8101,
                             watch_timeout_s=1)
        yield state, kube
        kube.stopping.set()


def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def test_parse_cpu() -> None:
    assert parse_cpu("500m") == 0.5
    assert parse_cpu("2") == 2.0
    assert parse_cpu(3) == 3.0
    assert parse_cpu(None) is None
    assert parse_cpu("lots") is None
    assert parse_cpu("1500m") == 1.5 and parse_cpu("0.25") == 0.25 and parse_cpu("250000u") == 0.25


def test_discovery_by_label(fake: tuple[FakeKube, KubeExecutors]) -> None:
    state, kube = fake
    version = kube.list()
    assert version == str(state.version)
    assert state.lists[-1]["labelSelector"] == [SELECTOR]
    pods = kube.pods()
    assert [p.name for p in pods] == ["ex-a", "ex-b"]
    a, b = pods
    assert (a.ready, a.url, a.cpu_limit, a.uid) == (True, "http://10.0.0.1:8101", 4.0, "uid-ex-a")
    assert (b.ready, b.url, b.cpu_limit) == (False, "http://10.0.0.2:9000", 2.5)


def test_watch_sees_pods_come_and_go(fake: tuple[FakeKube, KubeExecutors]) -> None:
    state, kube = fake
    changes: list[float] = []
    thread = threading.Thread(target=kube.watch_forever, args=(lambda: changes.append(time.time()), 0.1),
                              daemon=True)
    thread.start()
    try:
        _until(lambda: [p.name for p in kube.pods()] == ["ex-a", "ex-b"])
        state.add(make_pod("ex-c", "10.0.0.3"))
        _until(lambda: "ex-c" in [p.name for p in kube.pods()])
        state.delete("ex-a")
        _until(lambda: [p.name for p in kube.pods()] == ["ex-b", "ex-c"])
        state.add(make_pod("ex-b", "10.0.0.2", ready=True, port=9000))
        _until(lambda: all(p.ready for p in kube.pods()))
        state.add(make_pod("orchestrator-1", "10.0.0.8", labels=OTHER))
        time.sleep(0.3)
        assert [p.name for p in kube.pods()] == ["ex-b", "ex-c"]
        assert len(changes) >= 3
        assert any("watch" in q for q in state.lists)
    finally:
        kube.stopping.set()
        thread.join(10)
    assert not thread.is_alive()


def test_resize_sends_the_exact_patch(fake: tuple[FakeKube, KubeExecutors]) -> None:
    state, kube = fake
    kube.list()
    result = kube.resize("ex-a", 3)
    assert (result.status, result.http_status) == ("resized", 200)
    assert state.patches == [{
        "path": "/api/v1/namespaces/edge/pods/ex-a/resize",
        "content_type": RESIZE_CONTENT_TYPE,
        "body": {"spec": {"containers": [{"name": "executor",
                                          "resources": {"limits": {"cpu": "3"}, "requests": {"cpu": "3"}}}]}},
    }]
    assert RESIZE_CONTENT_TYPE == "application/strategic-merge-patch+json"
    assert state.pods["ex-a"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "3"
    assert (kube.pods()[0].cpu_limit, kube.pods()[0].budget) == (3.0, 4.0)  # the budget is the first limit
    assert resize_body("executor", 3) == state.patches[0]["body"]


@pytest.mark.parametrize("code", [403, 422])
def test_resize_refused_falls_back_to_quotas(fake: tuple[FakeKube, KubeExecutors], code: int) -> None:
    state, kube = fake
    kube.list()
    state.resize_status = code
    first = kube.resize("ex-a", 2)
    assert (first.status, first.http_status) == ("refused", code)
    assert len(state.patches) == 1
    again = kube.resize("ex-a", 1)  # a refusing pod is not asked again
    assert again.status == "refused"
    assert len(state.patches) == 1
    assert state.pods["ex-a"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"


def test_resize_error_is_retried_later(fake: tuple[FakeKube, KubeExecutors]) -> None:
    state, kube = fake
    kube.list()
    state.resize_status = 500
    assert kube.resize("ex-a", 2).status == "failed"
    state.resize_status = 200
    assert kube.resize("ex-a", 2).status == "resized"
    assert len(state.patches) == 2
    assert kube.resize("nope", 2).status == "unknown-pod"
