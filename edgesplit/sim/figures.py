"""Data of the paper's figures 7-9 and of our comparison, from the simulator and from real inference.

* fig. 7: single-task latency vs the average threads per task given to the baselines (1..20); the
  split methods use their zones whatever the load, so they are flat (paper 5.3.1);
* fig. 8: total latency of n tasks (1..10), one thread per task in the baselines. "Total latency"
  is the makespan: from the submission of the n tasks (all at t=0, priorities 1..n) to the last
  result (paper 5.3.2: for the baselines it "is equal to the latency of processing a single task");
* fig. 9: accuracy loss of split inference (``edgesplit.sim.accuracy``);
* compare: "Ours (edgesplit)" vs "Ours (paper)" per scenario and CNN: single-task latency with its
  per-stage breakdown, and throughput at saturation (a batch of tasks submitted at once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import Cluster, scenario
from edgesplit.sim.baselines import LABELS, Method, build
from edgesplit.sim.engine import PipelineMode, SimConfig, simulate
from edgesplit.sim.records import SimResult, make_tasks

Tick = Callable[[], None]
MODELS: tuple[str, ...] = ("alexnet-paper", "vgg16-paper")


def _noop() -> None:
    return None


def run_method(method: Method, n: int, pipeline: PipelineMode | None = None, seed: int = 0) -> SimResult:
    """``n`` tasks submitted at t=0 with priorities 1..n through one method."""
    tasks = make_tasks(method.workload.model, n, priorities=list(range(1, n + 1)), seed=seed)
    return simulate({method.workload.model: method.workload}, tasks,
                    SimConfig(pipeline=pipeline or method.pipeline, seed=seed))


def fig7_data(cluster: Cluster, models: Sequence[str] = MODELS, threads: Sequence[int] = range(1, 21),
              tick: Tick = _noop) -> list[dict[str, Any]]:
    """Rows (model, method, threads, latency_ms, predicted_ms) of fig. 7."""
    rows: list[dict[str, Any]] = []
    for model in models:
        spec = get_spec(model)
        flat = [build(spec, cluster, mode) for mode in ("ours-paper", "ours")]
        for t in threads:
            methods = [build(spec, cluster, "no-split", t), build(spec, cluster, "dads", t), *flat]
            for m in methods:
                sim = run_method(m, 1)
                rows.append({"model": model, "method": LABELS[m.mode], "threads": t,
                             "latency_ms": 1e3 * sim.tasks[0].latency_s, "predicted_ms": 1e3 * m.predicted_s})
            tick()
    return rows


def fig8_data(cluster: Cluster, models: Sequence[str] = MODELS, tasks: Sequence[int] = range(1, 11),
              tick: Tick = _noop) -> list[dict[str, Any]]:
    """Rows (model, method, tasks, total_latency_ms, first_task_ms, mean_latency_ms) of fig. 8."""
    rows: list[dict[str, Any]] = []
    for model in models:
        spec = get_spec(model)
        methods = [build(spec, cluster, mode, 1) for mode in ("no-split", "dads", "ours-paper", "ours")]
        for n in tasks:
            for m in methods:
                res = run_method(m, n)
                s = res.summary()
                rows.append({"model": model, "method": LABELS[m.mode], "pipeline": m.pipeline
                             if m.stages else "parallel", "tasks": n, "total_latency_ms": s["makespan_ms"],
                             "first_task_ms": 1e3 * res.tasks[0].latency_s,
                             "mean_latency_ms": s["latency_ms"]["mean"]})
            tick()
    return rows


def _breakdown(res: SimResult) -> dict[str, Any]:
    """Single-task breakdown from the records: per stage compute/transfer/overhead, then the cloud."""
    task = res.tasks[0]
    stages = [{"stage": s.label, "compute_ms": 1e3 * s.compute_s, "transfer_ms": 1e3 * s.transfer_s,
               "overhead_ms": 1e3 * s.overhead_s, "stage_ms": 1e3 * (s.end_s - s.start_s)}
              for s in task.stages]
    cloud = task.cloud
    return {"latency_ms": 1e3 * task.latency_s, "stages": stages,
            "edge_ms": 1e3 * (task.stages[-1].end_s - task.admitted_s),
            "cloud_transfer_ms": 1e3 * cloud.transfer_s if cloud else 0.0,
            "cloud_compute_ms": 1e3 * (cloud.compute_s + cloud.overhead_s) if cloud else 0.0}


def compare_data(seed: int = 0, models: Sequence[str] = MODELS,
                 scenarios: Sequence[str] = ("paper", "edge-1g"), saturation_tasks: int = 400,
                 tick: Tick = _noop) -> list[dict[str, Any]]:
    """Ours (edgesplit) vs Ours (paper): one row per scenario, CNN and method."""
    rows: list[dict[str, Any]] = []
    for name in scenarios:
        cluster = scenario(name, seed)
        for model in models:
            spec = get_spec(model)
            for mode in ("ours-paper", "ours"):
                m = build(spec, cluster, mode)
                one = _breakdown(run_method(m, 1, seed=seed))
                batch = run_method(m, saturation_tasks, seed=seed)
                rows.append({"scenario": name, "model": model, "method": LABELS[m.mode], "mode": mode,
                             "pipeline": m.pipeline, "stages": len(m.stages),
                             "predicted_ms": 1e3 * m.predicted_s,
                             **one, "throughput_per_s": batch.throughput_per_s(),
                             "edge_throughput_per_s": batch.edge_throughput_per_s(),
                             "saturation_tasks": saturation_tasks, "notes": list(m.notes)})
                tick()
    return rows
