"""The local stack: ``edgesplit up`` / ``submit`` / ``demo`` as real commands, and the serving modes
``no-split`` and ``dads`` (results equal the unsplit model)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from services.orchestrator.client import OrchestratorClient
from tooling.proc import REPO, free_port
from tooling.stack import AllocatorGroup, ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings
from tooling.workload import digit_sample

pytestmark = [pytest.mark.redis, pytest.mark.services]
CLI = [sys.executable, "-c", "from tooling.cli import main; main()"]


def _exact(oc: OrchestratorClient, model: str, seeds: range) -> list[dict]:
    spec = get_spec(model)
    module = load_model(spec, seed=0)
    xs = [np.random.default_rng(s).standard_normal((1, *spec.input)).astype(np.float32) for s in seeds]
    ids = [oc.submit(wire.encode(x), model, priority=2) for x in xs]  # at once: they run concurrently
    infos = [oc.result(i, wait_s=60) for i in ids]
    with torch.no_grad():
        for info, x in zip(infos, xs, strict=True):
            assert info["status"] == "done", info
            ref = module(torch.from_numpy(x))
            torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)
    return infos


@pytest.mark.parametrize("mode", ["no-split", "dads"])
def test_baseline_modes_give_the_unsplit_result(mode: str, tmp_path: Path) -> None:
    with LocalStack(StackSettings(
            models=("alexnet-paper",), log_dir=tmp_path,
            executor=ExecutorGroup(count=2, threads=2), orchestrator=OrchestratorGroup(mode=mode))) as st, \
            OrchestratorClient(st.url) as oc:
        infos = _exact(oc, "alexnet-paper", range(6))
    used = {m for i in infos for s in i["timings"]["stages"] for m in s["servers"]}
    for info in infos:
        stages = info["timings"]["stages"]
        assert len(stages) <= 1 and all(len(s["servers"]) == 1 for s in stages)  # whole, on one executor
        assert info["route"]["source"] == mode
    if mode == "no-split":
        assert used == {0, 1}, "tasks are spread over the executors"
    else:  # edge layers [0, cut) on one executor, the rest in the cloud
        cuts = {i["route"]["cloud_from"] for i in infos}
        assert len(cuts) == 1 and 0 <= (cut := cuts.pop()) <= get_spec("alexnet-paper").n_edge
        # a cut inside the edge part: the cloud ran layers [cut, ...), convs included
        assert all(i["timings"]["cloud"]["layers"][0] == cut for i in infos)


def test_no_split_serves_on_the_warm_executor_and_around_a_dead_one(tmp_path: Path) -> None:
    """One task at a time takes the slot freed last, so the same (warm) executor serves them all;
    with that executor killed, the tasks go to the other one and still equal the unsplit model."""
    settings = StackSettings(models=("alexnet-paper",), log_dir=tmp_path,
                             executor=ExecutorGroup(count=2, threads=1),
                             orchestrator=OrchestratorGroup(mode="no-split"))
    with LocalStack(settings) as st, OrchestratorClient(st.url) as oc:
        spec = get_spec("alexnet-paper")
        x = np.random.default_rng(3).standard_normal((1, *spec.input)).astype(np.float32)
        one_by_one = [oc.run(wire.encode(x), "alexnet-paper", priority=2, logits=False) for _ in range(4)]
        servers = {m for i in one_by_one for s in i["timings"]["stages"] for m in s["servers"]}
        assert len(servers) == 1, servers
        warm = servers.pop()
        st.kill_executor(warm)
        infos = _exact(oc, "alexnet-paper", range(3))  # each equals the unsplit model
    assert {m for i in infos for s in i["timings"]["stages"] for m in s["servers"]} == {1 - warm}


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.slow
def test_up_submit_and_stop_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    logs = tmp_path / "logs"
    up = subprocess.Popen([*CLI, "up", "--executors", "1", "--models", "digits-cnn", "--port", str(port),
                           "--log-dir", str(logs), "--max-batch", "4"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, up.stderr.read() if up.stderr else ""
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "edgesplit up never became ready"
            time.sleep(0.2)
        assert (logs / "cluster.yaml").is_file()
        assert httpx.get(url + "/v1/models", timeout=10).json()["max_batch"] == 4  # --max-batch reached it
        png, label, _ = digit_sample(5)
        image = tmp_path / "digit.png"
        image.write_bytes(png)
        done = _run_cli("submit", str(image), "--model", "digits-cnn", "--priority", "1", "--wait", "--json",
                        "--url", url)
        assert done.returncode == 0, done.stderr
        info = json.loads(done.stdout)
        assert info["status"] == "done" and info["top_k"][0]["class"] == label  # shipped trained weights
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    assert code == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/v2/health/live", timeout=1)


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    out = _run_cli("demo", "--executors", "2", "--tasks", "6", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert sum(s["done"] for s in report["by_priority"].values()) == 6
    sample = report["sample"]
    assert sample["status"] == "done" and sample["top1"] == sample["label"]
    assert sample["max_abs_diff_vs_local"] < 1e-4


def test_the_stack_runs_the_allocator_service_too(tmp_path: Path) -> None:
    """``AllocatorGroup(enabled=True)``: the allocator publishes the plans (the orchestrator runs them from
    Redis) and sets the executors' quotas; results stay exact."""
    from services.executor.client import ExecutorClient

    model = "digits-cnn"
    with LocalStack(StackSettings(
            models=(model,), log_dir=tmp_path, executor=ExecutorGroup(count=2, threads=2),
            allocator=AllocatorGroup(enabled=True, extra={"period_s": 1.0, "measure_s": 0.25}))) as st, \
            OrchestratorClient(st.url) as oc:
        assert st.allocator is not None and st.allocator in st.services()
        assert httpx.get(st.allocator.url + "/v2/health/ready", timeout=5).status_code == 200
        deadline = time.monotonic() + 60
        while True:  # the allocator's first plan reaches the orchestrator between tasks
            infos = _exact(oc, model, range(2))
            if all(i["route"]["source"] == "redis" for i in infos):
                break
            assert time.monotonic() < deadline, [i["route"] for i in infos]
            time.sleep(0.5)

        async def quotas() -> list[dict[str, dict[int, int]]]:
            out = []
            for port in st.exec_ports:
                async with ExecutorClient(f"http://127.0.0.1:{port}", st.token) as ex:
                    out.append(await ex.get_quotas())
            return out

        import asyncio

        tables = asyncio.run(quotas())
        assert any(model in t for t in tables), tables  # set by the allocator, kept by the orchestrator


def test_bench_e2e_reports_latency_ratios_and_where_the_time_went() -> None:
    """``edgesplit bench e2e`` end to end on a small sample (timings are reported, never asserted):
    the report holds the torch reference of a fresh process before and after the stack, the latency
    and throughput ratios and a breakdown of the stack's time whose parts are those of real tasks; the
    stack's cluster file says the executors share this machine."""
    out = _run_cli("bench", "e2e", "--model", "digits-cnn", "--executors", "2", "--runs", "3", "--tasks", "4",
                   "--gap-ms", "5", "--max-batch", "4", "--torch-batches", "1,4", "--json", timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    idle, ref, sat = r["stack_idle"], r["torch"], r["stack_saturated"]
    assert set(ref["before"]["batched_per_s"]) == set(ref["after"]["batched_per_s"]) == {"1", "4"}
    assert [p["omp_wait_policy"] for p in ref["before"]["processes"]] == ["default", "PASSIVE"]
    assert ref["idle_median_s"] == pytest.approx((ref["before"]["idle_median_s"]
                                                  + ref["after"]["idle_median_s"]) / 2)
    assert r["latency_ratio"] == pytest.approx(idle["median_s"] / ref["idle_median_s"])
    assert r["latency_ratio_hot"] == pytest.approx(idle["median_s"] / ref["hot_median_s"])
    assert r["throughput_ratio"] == pytest.approx(sat["throughput_per_s"] / ref["batch1_per_s"])
    assert r["throughput_ratio_batched"] == pytest.approx(sat["throughput_per_s"] / ref["best_per_s"])
    assert r["max_batch"] == 4 and 1 <= sat["mean_batch"] <= 4
    assert {"orchestrator", "cloud", "executor-0", "executor-1"} <= set(sat["cpu_s_per_task"])
    assert sat["cpu_s_per_task_total"] > 0 and ref["cpu_s_per_image"]["1"] > 0
    assert r["cpu_ratio"] == pytest.approx(ref["cpu_s_per_image"]["1"] / sat["cpu_s_per_task_total"])
    parts = idle["parts_ms"]
    assert set(parts) == {"submit", "queue", "edge_compute", "edge_transfer", "cloud", "result", "other"}
    assert parts["edge_compute"] > 0 and parts["cloud"] > 0 and parts["queue"] >= 0
    assert r["stack_saturated"]["tasks"] == 4 and r["stack_saturated"]["throughput_per_s"] > 0
    used = {m for step in r["route"]["steps"] for m in step["servers"]}
    assert used and used <= {0, 1}
