"""``edgesplit bench sim``: ours vs the paper's method (simulated), and the simulator's speed.

The latencies and throughputs are simulated (the latency model's numbers run through the SimPy
engine), not measured on hardware; the only wall-clock numbers are the simulator's own run times.
"""

from __future__ import annotations

import time
from typing import Any

from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import scenario
from edgesplit.sim.baselines import build
from edgesplit.sim.engine import SimConfig, simulate
from edgesplit.sim.figures import MODELS, compare_data
from edgesplit.sim.records import make_tasks
from edgesplit.sim.reproduce import Starter


def _speed(model: str, mode: str, pipeline: str, tasks: int, seed: int) -> dict[str, Any]:
    """Wall time of one simulation of ``tasks`` tasks at t=0 (priorities 1-3, link spread 5%)."""
    method = build(get_spec(model), scenario("paper", seed), mode)  # type: ignore[arg-type]
    batch = make_tasks(model, tasks, priorities=3, seed=seed)
    config = SimConfig(pipeline=pipeline, edge_link_spread=0.05, cloud_link_spread=0.05,  # type: ignore[arg-type]
                       seed=seed)
    started = time.perf_counter()
    res = simulate({model: method.workload}, batch, config)
    wall = time.perf_counter() - started
    transfers = sum(len(s.servers) for s in getattr(method.workload, "stages", ())) * 2 + 1
    return {"model": model, "mode": mode, "pipeline": pipeline, "tasks": tasks, "stages": len(method.stages),
            "wall_s": wall, "tasks_per_wall_s": tasks / wall, "transfers_per_task": transfers,
            "simulated_makespan_ms": 1e3 * res.makespan_s()}


def run_bench(tasks: int, saturation: int, seed: int, start: Starter) -> dict[str, Any]:
    """The comparison rows (see ``figures.compare_data``) and the simulator's speed."""
    rows = compare_data(seed, saturation_tasks=saturation, tick=start("compare", 8))
    tick = start("simulator speed", 4)
    speed = []
    for model in MODELS:
        for mode, pipeline in (("ours-paper", "lockstep"), ("ours", "async")):
            speed.append(_speed(model, mode, pipeline, tasks, seed))
            tick()
    return {"seed": seed, "compare": rows, "simulator_speed": speed}
