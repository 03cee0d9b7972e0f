"""Priorities, aging and multi-task alternation through a real stack.

``digits-cnn`` with the paper's split (one conv per stage: 2 stages) on 2 executors whose every slice
takes at least 0.1 s more (the executors' ``slice_delay_s`` fault injection), so that tasks wait
in the queue and stage intervals are long enough to compare. Assertions are on the order of events
recorded by the services (claim, stage and finish times, lockstep ticks), never on durations.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import redis
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from services.common.channels import plan_key, xfer_stream
from tooling.stack import ExecutorGroup, LocalStack, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
BODY = wire.encode(np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=("digits-cnn",), split="paper", log_dir=tmp_path_factory.mktemp("pipeline-stack"),
            executor=ExecutorGroup(count=2, threads=2, extra={"slice_delay_s": 0.1}))) as st:
        yield st


def _submit(c: httpx.Client, priority: int) -> str:
    r = c.post("/v1/tasks", params={"model": "digits-cnn", "priority": priority}, content=BODY)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _results(c: httpx.Client, ids: list[str]) -> dict[str, dict]:
    out = {i: c.get(f"/v1/tasks/{i}", params={"wait": 60, "logits": False}).json() for i in ids}
    bad = [v for v in out.values() if v["status"] != "done"]
    assert not bad, bad
    return out


def _wait_running(c: httpx.Client, tid: str) -> None:
    deadline = time.monotonic() + 20
    while c.get(f"/v1/tasks/{tid}").json()["status"] == "queued":
        assert time.monotonic() < deadline, "the first task never started"
        time.sleep(0.01)


def test_urgent_task_overtakes_every_queued_one(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        first = _submit(c, 5)
        _wait_running(c, first)  # the pipeline is busy
        low = [_submit(c, 5) for _ in range(20)]
        urgent = _submit(c, 1)
        res = _results(c, [first, *low, urgent])
    u = res[urgent]
    waiting = [res[i] for i in low if res[i]["started"] > u["submitted"]]  # had not started yet
    assert len(waiting) >= 10, "the pipeline drained the queue before the urgent task came"
    assert all(u["finished"] < w["finished"] for w in waiting)
    assert all(u["started"] < w["started"] for w in waiting)


def _claimed_at_submit(c: httpx.Client) -> float:
    for line in c.get("/metrics").text.splitlines():
        if line.startswith('edgesplit_orchestrator_claimed_at_submit_total{model="digits-cnn"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_task_submitted_to_an_idle_pipeline_is_claimed_by_its_submit(stack: LocalStack) -> None:
    """Stage 0 idle and nothing queued: the submit claims its task and hands it to the pipeline (no
    separate claim); its result is the unsplit model's. A task submitted while stage 0 is busy is
    queued and claimed later, as before."""
    module = load_model(get_spec("digits-cnn"), seed=0)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        _results(c, [])  # nothing in flight
        time.sleep(0.5)
        before = _claimed_at_submit(c)
        first = _submit(c, 3)
        queued_behind = _submit(c, 3)  # stage 0 runs the first for at least 0.1 s
        assert c.get(f"/v1/tasks/{queued_behind}").json()["status"] == "queued"
        res = c.get(f"/v1/tasks/{first}", params={"wait": 60}).json()
        _results(c, [queued_behind])
        after = _claimed_at_submit(c)
    assert res["status"] == "done" and after == before + 1
    with torch.no_grad():
        ref = module(torch.from_numpy(np.array(wire.decode(BODY)).reshape(1, 1, 8, 8)))
    torch.testing.assert_close(torch.tensor(res["logits"]).view_as(ref), ref)


def _intervals(info: dict) -> list[tuple[float, float]]:
    stages = sorted(info["timings"]["stages"], key=lambda s: s["stage"])
    return [(s["start"], s["end"]) for s in stages]


def test_async_pipeline_overlaps_consecutive_tasks(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        res = _results(c, [_submit(c, 3) for _ in range(6)])
    tasks = sorted(res.values(), key=lambda r: r["started"])
    for prev, nxt in itertools.pairwise(tasks):
        (_, _), (p1_start, p1_end) = _intervals(prev)
        (n0_start, n0_end), _ = _intervals(nxt)
        assert n0_start < p1_end and p1_start < n0_end, "stage 1 of a task and stage 0 of the next overlap"


def test_aging_lets_a_low_priority_task_through_a_stream_of_urgent_ones(stack: LocalStack) -> None:
    stack.restart_orchestrator(aging_s=0.1)  # one level per 0.1 s: priority 10 beats fresh 1s after 0.9 s
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        ahead = [_submit(c, 1) for _ in range(6)]  # the pipeline is busy and urgent tasks wait
        low = _submit(c, 10)
        stream = []
        for _ in range(26):  # urgent tasks keep coming faster than they are served
            stream.append(_submit(c, 1))
            time.sleep(0.05)
        res = _results(c, [*ahead, low, *stream])
    overtaken = [i for i in stream if res[i]["submitted"] < res[low]["started"] < res[i]["started"]]
    assert overtaken, "the low-priority task waited for every urgent task queued before it started"
    assert res[low]["finished"] < max(res[i]["finished"] for i in stream)


def test_lockstep_pipeline_advances_all_stages_together(stack: LocalStack) -> None:
    stack.restart_orchestrator(pipeline="lockstep")  # tests run in file order: the last ones are lockstep
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        res = _results(c, [_submit(c, 3) for _ in range(6)])
    tasks = sorted(res.values(), key=lambda r: r["started"])
    by_tick: dict[int, list[tuple[float, float]]] = {}
    firsts = []
    for t in tasks:
        stages = sorted(t["timings"]["stages"], key=lambda s: s["stage"])
        cloud = t["timings"]["cloud"]
        ticks = [s["tick"] for s in stages] + [cloud["tick"]]
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "one stage per tick"
        firsts.append(ticks[0])
        for rec in [*stages, cloud]:
            by_tick.setdefault(rec["tick"], []).append((rec["start"], rec["end"]))
    assert firsts == list(range(firsts[0], firsts[0] + len(firsts))), "a new task enters at every tick"
    assert any(len(v) >= 3 for v in by_tick.values()), "several stages ran in the same tick"
    for tick in sorted(by_tick)[1:]:
        if tick - 1 in by_tick:
            assert min(s for s, _ in by_tick[tick]) >= max(e for _, e in by_tick[tick - 1])


def test_a_plan_published_in_redis_is_taken_between_tasks(stack: LocalStack) -> None:
    from edgesplit.models import get_spec
    from edgesplit.plan.cluster import load_cluster
    from edgesplit.plan.planner import make_plan

    cluster = load_cluster(stack.cluster_path)
    plan = make_plan(get_spec("digits-cnn"), cluster, "paper", exclude={"executor-0"})
    body = {**plan.to_dict(), "version": 7}
    client = redis.Redis.from_url(stack.redis_url)
    client.set(plan_key(stack.prefix, "digits-cnn"), json.dumps(body))
    time.sleep(1.0)  # the orchestrator reads it at most every 0.5 s, between tasks
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        res = _results(c, [_submit(c, 2) for _ in range(3)])
    for info in res.values():
        assert info["route"]["source"] == "redis" and info["route"]["version"] == 7
        assert {m for s in info["timings"]["stages"] for m in s["servers"]} == {1}
    # the slice records the allocator fits link rates and speeds from
    assert client.xlen(xfer_stream(stack.prefix, "executor-1")) > 0
    client.delete(plan_key(stack.prefix, "digits-cnn"))


@pytest.mark.parametrize("cut", [2, 0])
def test_a_plan_with_an_edge_cloud_cut_runs_the_rest_in_the_cloud(stack: LocalStack, cut: int) -> None:
    """A plan whose edge part ends early (``Plan.cloud_from``, as the planner chooses where the cloud
    runs convs fast) serves results equal to the unsplit model: cut 2, the first conv split on the
    edge and the rest in the cloud; cut 0, no edge stage at all (the whole model in the cloud)."""
    import torch

    from edgesplit.models import get_spec
    from edgesplit.models.build import load_model
    from edgesplit.plan.cluster import load_cluster
    from edgesplit.plan.latency import predict
    from edgesplit.plan.planner import Plan, active_servers, edgesplit_stages
    from edgesplit.plan.search import SpecFacts

    spec = get_spec("digits-cnn")
    cluster = load_cluster(stack.cluster_path)
    stages = edgesplit_stages(SpecFacts.of(spec), cluster, active_servers(cluster), stop=cut) if cut else []
    plan = Plan(spec.name, tuple(stages), predict(spec, cluster, stages, cut), "edgesplit", 20 - cut,
                tuple(s.name for s in cluster.servers), cloud_from=cut)
    client = redis.Redis.from_url(stack.redis_url)
    client.set(plan_key(stack.prefix, "digits-cnn"), json.dumps(plan.to_dict()))
    time.sleep(1.0)  # the orchestrator reads it at most every 0.5 s, between tasks
    xs = [np.random.default_rng(s).standard_normal((1, *spec.input)).astype(np.float32) for s in range(2)]
    module = load_model(spec, seed=0)
    try:
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            ids = []
            for x in xs:
                r = c.post("/v1/tasks", params={"model": "digits-cnn", "priority": 2}, content=wire.encode(x))
                assert r.status_code == 202, r.text
                ids.append(str(r.json()["id"]))
            infos = [c.get(f"/v1/tasks/{i}", params={"wait": 60}).json() for i in ids]
    finally:
        client.delete(plan_key(stack.prefix, "digits-cnn"))
    with torch.no_grad():
        for info, x in zip(infos, xs, strict=True):
            assert info["status"] == "done", info
            assert info["route"]["version"] == 20 - cut  # newer than any plan before it
            edge = [s["layers"] for s in info["timings"]["stages"]]
            assert (edge[-1][1] if edge else 0) == cut  # the edge stopped at the cut
            ref = module(torch.from_numpy(x))
            torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)
