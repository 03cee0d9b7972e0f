"""Dynamic batching through a real stack: exact per-task results, priority order, urgent tasks never wait.

``digits-cnn`` split on 2 executors whose every slice takes at least 0.1 s more (``slice_delay_s``),
without the express lane (``express_lane`` false: the urgent tasks go through the pipeline, between
two chunks of a batch; ``test_express_lane`` runs them beside it).
Tasks are queued while the orchestrator runs without workers (``workers=false``: the API only), then
it restarts with them, so the claims see a known queue.
Assertions are on results and on what the services record (claim times, batch sizes), never on
durations.
"""

from __future__ import annotations

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
from tooling.stack import CloudGroup, ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODEL = "digits-cnn"
NO_DELAY = '{"1": 0.0, "2": 0.0}'  # max_queue_delay_s as its environment variable gives it (JSON)


def _input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=(MODEL,), log_dir=tmp_path_factory.mktemp("batching-stack"),
            executor=ExecutorGroup(count=2, threads=2, extra={"slice_delay_s": 0.1}),  # steps take a while
            cloud=CloudGroup(extra={"max_batch": 4}),  # refuses larger batches (the last test)
            orchestrator=OrchestratorGroup(extra={"max_batch": 4, "max_queue_delay_s": NO_DELAY,
                                                  "urgent_window_s": 60, "express_lane": False}))) as st:
        yield st


def _submit(c: httpx.Client, seed: int, priority: int) -> str:
    r = c.post("/v1/tasks", params={"model": MODEL, "priority": priority}, content=wire.encode(_input(seed)))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _result(c: httpx.Client, tid: str) -> dict:
    return dict(c.get(f"/v1/tasks/{tid}", params={"wait": 60}).json())


def _queued(stack: LocalStack, c: httpx.Client, tasks: list[tuple[int, int]],
            max_batch: int = 4) -> list[str]:
    """Queue ``(seed, priority)`` tasks while nothing claims, then start the workers (``max_batch``)."""
    stack.restart_orchestrator(workers=False)
    ids = [_submit(c, seed, prio) for seed, prio in tasks]
    stack.restart_orchestrator(workers=True, max_batch=max_batch)
    return ids


def test_each_batched_result_equals_its_unbatched_result(stack: LocalStack) -> None:
    module = load_model(get_spec(MODEL), seed=0)
    seeds = list(range(8))
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        ids = _queued(stack, c, [(s, 3) for s in seeds])
        batched = [_result(c, i) for i in ids]
        assert all(r["status"] == "done" for r in batched), batched
        assert [r["timings"]["batch"] for r in batched] == [4] * 8  # two full batches
        stack.restart_orchestrator(max_batch=1)
        alone = [_result(c, _submit(c, s, 3)) for s in seeds]
    assert all(r["status"] == "done" and "batch" not in r["timings"] for r in alone)
    for seed, b, a in zip(seeds, batched, alone, strict=True):
        got = torch.tensor(b["logits"])
        torch.testing.assert_close(got, torch.tensor(a["logits"]))  # batched == unbatched, same stack
        with torch.no_grad():
            ref = module(torch.from_numpy(_input(seed)))
        torch.testing.assert_close(got.view_as(ref), ref)  # == the unsplit torch module


def test_a_batch_never_holds_a_lower_priority_task_while_a_higher_one_waits(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        tasks = [(10 + i, 5) for i in range(6)] + [(20 + i, 1) for i in range(3)]
        ids = _queued(stack, c, tasks)
        res = [_result(c, i) for i in ids]
    low, urgent = res[:6], res[6:]
    assert all(r["status"] == "done" for r in res)
    # the urgent tasks queued last are claimed first, each alone (max_batch_by_priority {1: 1}: no
    # less urgent task pads an urgent one's batch); then the low ones in full batches
    assert max(u["started"] for u in urgent) <= min(t["started"] for t in low)
    assert [u["timings"]["batch"] for u in urgent] == [1, 1, 1]
    assert sorted(t["timings"]["batch"] for t in low) == [2, 2, 4, 4, 4, 4]
    # urgent tasks came: the low batches' first step ran one task at a time (batch_chunk 1), with
    # room for an urgent task between two
    assert sorted(t["timings"]["stages"][0]["chunks"] for t in low) == [2, 2, 4, 4, 4, 4]


def test_an_urgent_task_goes_between_two_chunks_of_a_batch(stack: LocalStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        _, *low_ids = _queued(stack, c, [(70, 1)] + [(71 + i, 5) for i in range(4)])  # urgent traffic
        deadline = time.monotonic() + 30
        while c.get(f"/v1/tasks/{low_ids[0]}").json()["status"] == "queued":
            assert time.monotonic() < deadline, "the batch never started"
            time.sleep(0.005)
        late = _result(c, _submit(c, 80, 1))  # while the batch's first step runs, one task at a time
        low = [_result(c, i) for i in low_ids]
    assert late["status"] == "done" and all(r["status"] == "done" for r in low)
    stage0 = low[0]["timings"]["stages"][0]
    assert stage0["chunks"] == 4 and low[0]["timings"]["batch"] == 4
    assert stage0["start"] < late["started"] < stage0["end"]  # it took stage 0 between two chunks
    assert late["finished"] < min(r["finished"] for r in low)


def test_an_urgent_task_never_waits_while_a_partial_batch_does(stack: LocalStack) -> None:
    # a low-priority task alone may wait a minute for company
    stack.restart_orchestrator(max_batch=4, max_queue_delay_s='{"1": 0.0, "2": 60.0}')
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        low = _submit(c, 30, 5)
        time.sleep(1.0)
        assert c.get(f"/v1/tasks/{low}").json()["status"] == "queued", "a partial batch went early"
        urgent = _result(c, _submit(c, 31, 1))  # goes at once, alone
        assert urgent["status"] == "done" and urgent["timings"]["batch"] == 1
        assert c.get(f"/v1/tasks/{low}").json()["status"] == "queued"
        more = [_submit(c, 32 + i, 5) for i in range(3)]  # the batch fills up: it goes
        res = [_result(c, i) for i in [low, *more]]
    assert [r["status"] for r in res] == ["done"] * 4
    assert len({r["started"] for r in res}) == 1 and res[0]["timings"]["batch"] == 4


def test_an_unreadable_input_fails_alone_and_metrics_count_batches(stack: LocalStack) -> None:
    r = redis.Redis.from_url(stack.redis_url)
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        stack.restart_orchestrator(workers=False)
        ids = [_submit(c, 40 + i, 3) for i in range(4)]
        r.hset(f"{stack.prefix}task:{ids[1]}", "input", b"not an NPY array")  # corrupt one while queued
        stack.restart_orchestrator(workers=True, max_batch=4, max_queue_delay_s=NO_DELAY)
        res = [_result(c, i) for i in ids]
        metrics = c.get("/metrics").text
    assert [x["status"] for x in res] == ["done", "failed", "done", "done"]
    assert "stored input is unreadable" in res[1]["error"]
    assert f'edgesplit_orchestrator_batch_size_count{{model="{MODEL}"}}' in metrics
    assert f'edgesplit_orchestrator_queue_delay_seconds_count{{model="{MODEL}",priority="3"}}' in metrics


def test_a_batch_the_cloud_refuses_runs_one_by_one_from_there(stack: LocalStack) -> None:
    module = load_model(get_spec(MODEL), seed=0)
    seeds = [60 + i for i in range(8)]
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        ids = _queued(stack, c, [(s, 3) for s in seeds], max_batch=8)  # the cloud takes batches of 4 at most
        res = [_result(c, i) for i in ids]
    assert [r["status"] for r in res] == ["done"] * 8, [r.get("error") for r in res]
    assert len({r["timings"]["stages"][0]["start"] for r in res}) == 1  # the edge ran the batch of 8
    assert len({r["timings"]["cloud"]["start"] for r in res}) == 8  # the cloud, one task at a time
    for seed, r in zip(seeds, res, strict=True):
        with torch.no_grad():
            ref = module(torch.from_numpy(_input(seed)))
        torch.testing.assert_close(torch.tensor(r["logits"]).view_as(ref), ref)


def _urgent_beside(stack: LocalStack, low_seeds: list[int], seed: int) -> tuple[dict, list[dict]]:
    """Queue priority-5 tasks of ``low_seeds`` (they start in batches), submit a priority-1 task of
    ``seed`` once the first of them runs; both ends' results (all done, the urgent one exact)."""
    module = load_model(get_spec(MODEL), seed=0)
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        low_ids = _queued(stack, c, [(s, 5) for s in low_seeds])
        deadline = time.monotonic() + 30
        while c.get(f"/v1/tasks/{low_ids[0]}").json()["status"] == "queued":
            assert time.monotonic() < deadline, "no batch started"
            time.sleep(0.005)
        late = _result(c, _submit(c, seed, 1))
        low = [_result(c, i) for i in low_ids]
    assert late["status"] == "done" and all(r["status"] == "done" for r in low)
    with torch.no_grad():
        ref = module(torch.from_numpy(_input(seed)))
    torch.testing.assert_close(torch.tensor(late["logits"]).view_as(ref), ref)
    return late, low


def test_express_lane_runs_an_urgent_task_beside_a_running_batch(stack: LocalStack) -> None:
    """With the express lane (the default), an urgent task submitted while a batch is in its first
    step can start its own first step before that step ends (on the executors' urgent lanes, beside the
    batch; without the lane it waits for the step, or for a chunk of it); its result is exact; batches
    are not chunked. The step lasts 0.1 s and a loaded machine may take that long to submit and claim
    the urgent task, so up to three tries: without the express lane none can overlap."""
    stack.restart_orchestrator(max_batch=4, max_queue_delay_s=NO_DELAY, express_lane=True)
    overlapped = []
    for attempt in range(3):
        late, low = _urgent_beside(stack, [90 + 5 * attempt + i for i in range(4)], 94 + 5 * attempt)
        stage0 = low[0]["timings"]["stages"][0]
        assert low[0]["timings"]["batch"] == 4 and "chunks" not in stage0
        overlapped.append(late["timings"]["stages"][0]["start"] < stage0["end"])  # beside, not after
        if overlapped[-1]:
            break
    assert any(overlapped), overlapped


def test_express_lane_of_whole_task_modes_skips_the_slots_batches_hold(stack: LocalStack) -> None:
    """``no-split`` (the whole-task runner of no-split and DADS): every executor sub-zone holds a batch
    of 4 (16 tasks queued, at most 4 sub-zones), and an urgent task submitted then starts its step before
    the first of those batches' steps ends, on an executor's urgent lane, where without the express lane
    it waited for a sub-zone to come free (a batch's step and cloud call). Its result is exact. Up to
    three tries, as above: a loaded machine may take a whole step to submit and claim it."""
    overlapped = []
    try:
        stack.restart_orchestrator(mode="no-split", max_batch=4, max_queue_delay_s=NO_DELAY,
                                   express_lane=True)
        for attempt in range(3):
            late, low = _urgent_beside(stack, [120 + 20 * attempt + i for i in range(16)], 119 + 20 * attempt)
            assert late["timings"]["batch"] == 1 and {r["timings"]["batch"] for r in low} == {4}
            first_end = min(r["timings"]["stages"][0]["end"] for r in low)
            overlapped.append(late["timings"]["stages"][0]["start"] < first_end)
            if overlapped[-1]:
                break
    finally:
        stack.restart_orchestrator(mode="split")
    assert any(overlapped), overlapped


def test_while_urgent_tasks_come_a_batch_holds_at_most_urgent_max_batch(stack: LocalStack) -> None:
    """An urgent task claimed first opens the urgent window: the 8 low tasks queued behind it go in
    batches of ``urgent_max_batch`` (2), not ``max_batch`` (4). Without an urgent task (a fresh
    orchestrator: no window) the same queue goes in batches of 4. All results exact."""
    module = load_model(get_spec(MODEL), seed=0)
    try:
        stack.restart_orchestrator(urgent_max_batch=2, max_queue_delay_s=NO_DELAY)
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            ids = _queued(stack, c, [(150, 1)] + [(151 + i, 5) for i in range(8)])
            beside = [_result(c, i) for i in ids]
            alone = [_result(c, i) for i in _queued(stack, c, [(151 + i, 5) for i in range(8)])]
    finally:
        stack.restart_orchestrator(urgent_max_batch=4)
    assert all(r["status"] == "done" for r in beside + alone)
    assert beside[0]["timings"]["batch"] == 1
    assert [r["timings"]["batch"] for r in beside[1:]] == [2] * 8
    assert [r["timings"]["batch"] for r in alone] == [4] * 8
    for seed, r in zip(range(150, 159), beside, strict=True):
        with torch.no_grad():
            ref = module(torch.from_numpy(_input(seed)))
        torch.testing.assert_close(torch.tensor(r["logits"]).view_as(ref), ref)
    for b, a in zip(beside[1:], alone, strict=True):
        torch.testing.assert_close(torch.tensor(b["logits"]), torch.tensor(a["logits"]))
