"""``edgesplit bench plan``: our plan vs the paper's in the latency model, and planner wall times.

Timings are medians of ``repeats`` runs of ``time.perf_counter``; nothing here is asserted in tests.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import SCENARIOS, scenario
from edgesplit.plan.dads import dads, no_split
from edgesplit.plan.planner import make_plan
from edgesplit.plan.ratios import algorithm1, eq7_ratios, minmax_split, waterfill

BENCH_MODELS: tuple[str, ...] = ("alexnet-paper", "vgg16-paper")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare_plans(model: str, scenario_name: str, seed: int = 0) -> dict[str, Any]:
    """Predicted latency (ms) of our plan, our plan with one conv per group, and the paper's plan."""
    spec = get_spec(model)
    cluster = scenario(scenario_name, seed)
    ours = make_plan(spec, cluster, "edgesplit")
    ours_conv = make_plan(spec, cluster, "edgesplit", one_conv_per_group=True)
    paper = make_plan(spec, cluster, "paper")
    return {
        "model": model, "scenario": scenario_name, "seed": seed,
        "ours_edge_ms": 1e3 * ours.predicted.edge_s, "paper_edge_ms": 1e3 * paper.predicted.edge_s,
        "ratio": paper.predicted.edge_s / ours.predicted.edge_s,
        "ours_one_conv_per_group_edge_ms": 1e3 * ours_conv.predicted.edge_s,
        "ours_total_ms": 1e3 * ours.predicted.total_s, "paper_total_ms": 1e3 * paper.predicted.total_s,
        "ours_stages": [f"[{s.start},{s.stop}) {s.strategy} x{len(s.servers)}" for s in ours.stages],
        "paper_stages": len(paper.stages),
        "no_split_1thread_ms": 1e3 * no_split(spec, cluster).total_s,
        "dads_1thread_ms": 1e3 * dads(spec, cluster).total_s,
    }


def planner_times(model: str, servers: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Median wall time (s) of ``make_plan`` with the paper's split and ours, ``paper`` scenario."""
    spec = get_spec(model)
    cluster = scenario("paper", seed, servers)
    return {"model": model, "servers": servers,
            "paper_plan_s": median_time(lambda: make_plan(spec, cluster, "paper"), repeats),
            "edgesplit_plan_s": median_time(lambda: make_plan(spec, cluster, "edgesplit"), repeats)}


def split_times(servers: int, units: int, repeats: int, seed: int = 0, size: float = 3.7e9) -> dict[str, Any]:
    """Algorithm 1 vs the optimal split on the paper's compute-only cost model: ``units`` units of a conv
    of ``size`` FLOPs over servers of random speed (1-20 threads of 80 GFLOPS). Wall time of each
    (s) and the bottleneck each reaches (ms)."""
    rng = random.Random(seed)
    speeds = [rng.randint(1, 20) * 80e9 for _ in range(servers)]
    per_unit = size / units
    table = per_unit * np.arange(units + 1, dtype=np.float64)[None, :] / np.array(speeds)[:, None]
    costs = [lambda n, s=s: per_unit * n / s for s in speeds]

    def alg1() -> list[int]:
        return algorithm1(units, eq7_ratios([size / s for s in speeds]), speeds)

    alg_parts = alg1()
    opt_parts, opt_value = minmax_split(units, table)
    return {
        "servers": servers, "units": units, "conv_flops": size,
        "algorithm1_s": median_time(alg1, repeats),
        "optimal_vectorised_s": median_time(lambda: minmax_split(units, table), repeats),
        "optimal_waterfill_s": median_time(lambda: waterfill(units, costs), repeats),
        "algorithm1_bottleneck_ms": 1e3 * max(c(n) for c, n in zip(costs, alg_parts, strict=True)),
        "optimal_bottleneck_ms": 1e3 * opt_value,
        "parts_sum": [sum(alg_parts), sum(opt_parts)],
    }


def bench_plan(repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Everything ``edgesplit bench plan`` reports (docs/BENCHMARKS.md, planner section)."""
    comparisons = [compare_plans(m, s, seed) for s in SCENARIOS for m in BENCH_MODELS]
    planners = [planner_times(m, k, repeats, seed) for k in (8, 64) for m in BENCH_MODELS]
    splits = [split_times(k, units, repeats, seed) for k in (8, 64) for units in (224, 3)]
    return {"repeats": repeats, "seed": seed, "comparisons": comparisons, "planner_wall": planners,
            "split_wall": splits}
