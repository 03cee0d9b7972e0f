"""One simulation as the ``simulate`` command runs it: scenario, methods, tasks, run, report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from edgesplit.alloc.zones import zone_clusters
from edgesplit.errors import InvalidInput
from edgesplit.models.spec import load_spec_file
from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import resolve_cluster
from edgesplit.sim.baselines import LABELS, MODES, Method, Mode, build
from edgesplit.sim.engine import PipelineMode, Progress, SimConfig, simulate
from edgesplit.sim.records import SimResult, make_tasks


@dataclass(frozen=True)
class SimRequest:
    """What to simulate (the ``simulate`` command's options)."""

    models: tuple[str, ...] = ("alexnet-paper",)
    model_file: Path | None = None
    scenario: str = "paper"
    tasks: int = 10
    mode: str = "ours"
    pipeline: str | None = None
    threads: int = 1
    rate: float = 0.0
    priorities: int = 3
    aging: float = 0.0
    link_spread: float = 0.0
    seed: int = 0


def _check(req: SimRequest) -> tuple[Mode, PipelineMode | None]:
    if req.mode not in MODES:
        raise InvalidInput(f"unknown mode {req.mode!r}; expected one of {', '.join(MODES)}")
    if req.pipeline not in (None, "async", "lockstep"):
        raise InvalidInput(f"unknown pipeline {req.pipeline!r}; expected async or lockstep")
    return cast(Mode, req.mode), cast(PipelineMode | None, req.pipeline)


def _method_report(m: Method, result: SimResult) -> dict[str, Any]:
    return {"method": LABELS[m.mode], "predicted_single_task_ms": 1e3 * m.predicted_s,
            "stages": [s.to_dict() for s in m.stages], "cut": m.cut, "notes": list(m.notes),
            "summary": result.summary(m.workload.model)}


def run_simulation(req: SimRequest, progress: Progress | None = None) -> tuple[dict[str, Any], SimResult]:
    """Build the methods, simulate ``req.tasks`` tasks per CNN, and report per CNN; ``progress`` gets
    the tasks finished so far, now and then (``Simulation.run``)."""
    mode, pipeline = _check(req)
    cluster = resolve_cluster(req.scenario, req.seed)
    specs = [load_spec_file(req.model_file)] if req.model_file else [get_spec(m) for m in req.models]
    if len({s.name for s in specs}) != len(specs):
        raise InvalidInput("each model may be given once")
    views = zone_clusters(cluster, specs)
    methods = {s.name: build(s, views[s.name], mode, req.threads) for s in specs}
    chosen: PipelineMode = pipeline or next(iter(methods.values())).pipeline
    tasks = []
    for i, spec in enumerate(specs):
        tasks += make_tasks(spec.name, req.tasks, rate_per_s=req.rate, priorities=req.priorities,
                            seed=req.seed + 1000 * i, first_id=i * req.tasks)
    config = SimConfig(pipeline=chosen, aging_s=req.aging, edge_link_spread=req.link_spread,
                       cloud_link_spread=req.link_spread, seed=req.seed)
    result = simulate({name: m.workload for name, m in methods.items()}, tasks, config, progress)
    report = {"scenario": req.scenario, "mode": mode, "pipeline": chosen if methods[specs[0].name].stages
              else "parallel", "seed": req.seed, "tasks_per_model": req.tasks, "rate_per_s": req.rate,
              "aging_s": req.aging, "link_spread": req.link_spread,
              "models": {name: _method_report(m, result) for name, m in methods.items()},
              "overall": result.summary()}
    return report, result
