"""Sensitivity of the reproduction's conclusions to two choices the paper leaves open.

* **Whose sub-zones "Ours (paper)" gets**: the exact allocator's (what the figures use) or the
  allocation of the TD3 (and DDPG) policy trained for fig. 6 on the paper's MDP (``fig6`` summary:
  each run's kept policy, deterministic, at nominal conditions).
* **How the edge links are read**: the paper's "605 Gb/s and 635 Gb/s" as written, or as Mb/s
  (the same draws divided by 1000), a reading under which transfers between edge servers matter.

For each variant the same conclusions as fig. 7 and 8: the single-task latency of Ours (paper),
the baselines' latency at one thread per task and its ratio to Ours (paper), the threads per task at
which each baseline reaches Ours (paper), and the task from which n tasks of Ours (paper) take longer
in total than n DADS tasks. Single-task latencies are the latency model's (``Method.predicted_s``,
which the simulator matches to 1e-9); the totals of n tasks are simulated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from edgesplit.models.spec import ModelSpec
from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import Cluster, scenario
from edgesplit.plan.planner import make_plan
from edgesplit.sim.baselines import Method, Mode, build, split_method
from edgesplit.sim.figures import MODELS, run_method

Tick = Callable[[], None]
BASELINES: tuple[str, ...] = ("No Split", "DADS")
MODES: dict[str, Mode] = {"No Split": "no-split", "DADS": "dads"}
LINK_VARIANTS: tuple[str, ...] = ("Gb/s (as written)", "Mb/s")
LINK_SCALE: dict[str, float] = {"Gb/s (as written)": 1.0, "Mb/s": 1e-3}


def edge_links_scaled(cluster: Cluster, factor: float) -> Cluster:
    """The same cluster with every edge link's rate multiplied by ``factor``."""
    return replace(cluster, servers=tuple(replace(s, link_bps=s.link_bps * factor) for s in cluster.servers))


def paper_method_with(spec: ModelSpec, cluster: Cluster, alloc: Sequence[Sequence[int]],
                      source: str) -> Method:
    """Ours (paper) with the sub-zones ``alloc[m][i]`` (servers x convs, as fig. 6's runs report them)."""
    table = [list(col) for col in zip(*alloc, strict=True)]
    plan = make_plan(spec, cluster, "paper", threads=table)
    return split_method(spec, cluster, "ours-paper", plan.stages, (f"sub-zones: {source}",))


def conclusions(spec: ModelSpec, cluster: Cluster, ours: Method, threads: Sequence[int],
                tasks: Sequence[int]) -> dict[str, Any]:
    """fig. 7 and fig. 8's conclusions for one variant (module docstring). Milliseconds."""
    ours_ms = 1e3 * ours.predicted_s
    curves = {b: [(t, 1e3 * build(spec, cluster, MODES[b], t).predicted_s) for t in threads]
              for b in BASELINES}
    at1 = {b: curve[0][1] for b, curve in curves.items()}
    reach = {b: next((t for t, ms in curve if ms <= ours_ms), None) for b, curve in curves.items()}
    dads1 = build(spec, cluster, "dads", 1)
    exceeds = next((n for n in tasks if run_method(ours, n).summary()["makespan_ms"]
                    > run_method(dads1, n).summary()["makespan_ms"]), None)
    return {"ours_paper_ms": round(ours_ms, 3), "sub_zones": ours.notes[0] if ours.notes else "",
            "at_1_thread_ms": {b: round(v, 3) for b, v in at1.items()},
            "times_ours_paper": {b: round(v / ours_ms, 2) for b, v in at1.items()},
            "baseline_reaches_ours_paper_at_threads": reach,
            "ours_paper_exceeds_dads_from_task": exceeds}


def thread_variants(cluster: Cluster, fig6_runs: Sequence[dict[str, Any]], threads: Sequence[int],
                    tasks: Sequence[int], tick: Tick) -> dict[str, Any]:
    """Per CNN: the exact allocator's sub-zones vs each fig. 6 policy's (when fig. 6 ran)."""
    out: dict[str, Any] = {}
    for model in MODELS:
        spec = get_spec(model)
        variants = {"exact allocator": conclusions(spec, cluster, build(spec, cluster, "ours-paper"), threads,
                                                   tasks)}
        for run in fig6_runs:
            if run["model"] == model and run.get("allocation"):
                label = f"{run['algo'].upper()} (fig. 6 run, seed {run['seed']})"
                method = paper_method_with(spec, cluster, run["allocation"], f"{label}'s policy")
                variants[label] = conclusions(spec, cluster, method, threads, tasks)
        out[model] = variants
        tick()
    return out


def link_variants(seed: int, threads: Sequence[int], tasks: Sequence[int], tick: Tick) -> dict[str, Any]:
    """Per CNN: the paper scenario with its edge links as written and read as Mb/s."""
    base = scenario("paper", seed)
    out: dict[str, Any] = {}
    for model in MODELS:
        spec = get_spec(model)
        variants = {}
        for name in LINK_VARIANTS:
            cluster = edge_links_scaled(base, LINK_SCALE[name])
            row = conclusions(spec, cluster, build(spec, cluster, "ours-paper"), threads, tasks)
            row["ours_ms"] = round(1e3 * build(spec, cluster, "ours").predicted_s, 3)
            variants[name] = row
            tick()
        out[model] = variants
    return out


def sensitivity_data(seed: int, fig6_runs: Sequence[dict[str, Any]], threads: Sequence[int],
                     tasks: Sequence[int], tick: Tick) -> dict[str, Any]:
    """Both sensitivity studies; ``fig6_runs`` is ``summary["fig6"]["runs"]`` (empty: no TD3 rows)."""
    return {"threads": thread_variants(scenario("paper", seed), fig6_runs, threads, tasks, tick),
            "links": link_variants(seed, threads, tasks, tick),
            "fig6_available": bool(fig6_runs)}
