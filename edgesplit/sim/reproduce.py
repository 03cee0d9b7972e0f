"""``edgesplit reproduce``: the paper's figures 6-9, our comparison and the sensitivity study.

Each target writes ``<target>.csv`` and ``<target>.png`` into the output folder (fig. 6 writes what
``edgesplit.alloc`` writes; ``sensitivity`` writes only its summary) and returns a summary of every
number ``docs/REPRODUCTION.md`` quotes; ``summary.json`` collects them with the scenario and each
target's run time, and ``edgesplit.sim.report`` renders the docs' tables from it. ``quick`` runs fewer
points, steps and samples (for the test suite) but gives a summary of the same structure.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from edgesplit.errors import InvalidInput
from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import PAPER_CLOUD_LINK_BPS, Cluster, scenario
from edgesplit.plan.dads import calibrate_cloud_flops
from edgesplit.sim import figures, plots
from edgesplit.sim.baselines import build

TARGETS: tuple[str, ...] = ("fig6", "fig7", "fig8", "fig9", "compare", "sensitivity")
QUICK_FIG6_STEPS = 200
BASELINES: tuple[str, ...] = ("No Split", "DADS")
METHODS: tuple[str, ...] = ("No Split", "DADS", "Ours (paper)", "Ours (edgesplit)")
DADS_FIG7_MS = 17.0  # the paper's DADS at one thread, AlexNet (5.3.1: "about 17 ... milliseconds")
Tick = Callable[[], None]
Starter = Callable[[str, int], Tick]  # (description, total steps) -> tick


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows as CSV; lists and dicts are written as JSON strings."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in r.items()})


def _ms(rows: Sequence[dict[str, Any]], key: str, **match: Any) -> float:
    return float(next(r[key] for r in rows if all(r[k] == v for k, v in match.items())))


def fig7(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    threads = (1, 5, 20) if quick else tuple(range(1, 21))
    cluster = scenario("paper", seed)
    rows = figures.fig7_data(cluster, threads=threads,
                             tick=start("fig. 7", len(figures.MODELS) * len(threads)))
    write_csv(out / "fig7.csv", rows)
    plots.plot_fig7(rows, out / "fig7.png")
    summary: dict[str, Any] = {}
    for model in figures.MODELS:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["threads"])
        raw = {r["method"]: r["latency_ms"] for r in mine if r["threads"] == 1}
        at1 = {m: round(v, 3) for m, v in raw.items()}

        def reach(target: float, method: str, mine: list[dict[str, Any]] = mine) -> int | None:
            return next((r["threads"] for r in mine if r["method"] == method and r["latency_ms"] <= target),
                        None)

        summary[model] = {
            "at_1_thread_ms": at1,
            "times_ours_paper": {b: round(raw[b] / raw["Ours (paper)"], 2) for b in BASELINES},
            "baseline_reaches_ours_paper_at_threads": {b: reach(raw["Ours (paper)"], b) for b in BASELINES},
            "baseline_reaches_ours_at_threads": {b: reach(raw["Ours (edgesplit)"], b) for b in BASELINES},
            "dads_cut_at_threads": {str(t): build(get_spec(model), cluster, "dads", t).cut for t in threads},
            "ours_paper_sub_zones": build(get_spec(model), cluster, "ours-paper").notes[0],
            "threads": list(threads)}
    return summary


def fig8(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    tasks = (1, 2, 4, 6, 8, 10) if quick else tuple(range(1, 11))
    rows = figures.fig8_data(scenario("paper", seed), tasks=tasks,
                             tick=start("fig. 8", len(figures.MODELS) * len(tasks)))
    write_csv(out / "fig8.csv", rows)
    plots.plot_fig8(rows, out / "fig8.png")
    summary: dict[str, Any] = {}
    for model in figures.MODELS:
        def total(method: str, n: int, model: str = model) -> float:
            return _ms(rows, "total_latency_ms", model=model, method=method, tasks=n)

        first = tasks[0]
        ours = total("Ours (paper)", first)
        summary[model] = {
            "first_task_gap_ms": {b: round(total(b, first) - ours, 3) for b in ("DADS", "No Split")},
            "ours_paper_exceeds_dads_from_task": next((n for n in tasks if total("Ours (paper)", n)
                                                       > total("DADS", n)), None),
            "ours_exceeds_dads_from_task": next((n for n in tasks if total("Ours (edgesplit)", n)
                                                 > total("DADS", n)), None),
            "no_split_above_ours_paper_for_first_tasks": next(
                (n - 1 for n in tasks if total("No Split", n) <= total("Ours (paper)", n)), tasks[-1]),
            "total_ms": {m: [round(total(m, n), 3) for n in tasks] for m in METHODS},
            "first_task_ms": {m: [round(_ms(rows, "first_task_ms", model=model, method=m, tasks=n), 3)
                                  for n in tasks] for m in METHODS},
            "tasks": list(tasks)}
    return summary


def fig9(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    from edgesplit.sim.accuracy import fig9_data  # torch only here

    runs = 4 + 2 * 3
    rows = fig9_data(quick, seed, tick=start("fig. 9 (torch)", 2 * runs))
    write_csv(out / "fig9.csv", rows)
    plots.plot_fig9(rows, out / "fig9.png")
    summary: dict[str, Any] = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == ds]
        summary[ds] = {"exact_min_agreement": min(r["agreement"] for r in mine if r["exact"]),
                       "loss_pct": {f"{r['method']}@{r['servers']}": round(100 * r["accuracy_loss"], 2)
                                    for r in mine},
                       "naive_loss_pct": {f"{r['method']}@{r['servers']}": round(100 * r["accuracy_loss"], 2)
                                          for r in mine if not r["exact"]},
                       "samples": mine[0]["samples"], "unsplit_accuracy": mine[0]["unsplit_accuracy"]}
    return summary


def compare(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    n = 60 if quick else 400
    rows = figures.compare_data(seed, saturation_tasks=n, tick=start("compare", 2 * 2 * 2))
    write_csv(out / "compare.csv", [{k: v for k, v in r.items() if k != "stages"} for r in rows])
    (out / "compare.json").write_text(json.dumps(rows, indent=1))
    plots.plot_compare(rows, out / "compare.png")
    summary: dict[str, Any] = {}
    for r in rows:
        if r["mode"] != "ours":
            continue
        paper = next(p for p in rows if p["mode"] == "ours-paper" and p["scenario"] == r["scenario"]
                     and p["model"] == r["model"])
        summary[f"{r['scenario']}/{r['model']}"] = {
            "ours_paper_ms": round(paper["latency_ms"], 3), "ours_ms": round(r["latency_ms"], 3),
            "speedup": round(paper["latency_ms"] / r["latency_ms"], 2),
            "throughput_per_s": {"ours_paper": round(paper["throughput_per_s"], 1),
                                 "ours": round(r["throughput_per_s"], 1)},
            "edge_throughput_per_s": {"ours_paper": round(paper["edge_throughput_per_s"], 1),
                                      "ours": round(r["edge_throughput_per_s"], 1)},
            "saturation_tasks": n,
            "breakdown": {p["mode"]: _breakdown(p) for p in (paper, r)}}
    return summary


def _breakdown(row: dict[str, Any]) -> dict[str, Any]:
    """One task's time by part (``plots.parts``: they sum to its latency) and its stages' labels."""
    parts = {k: round(v, 3) for k, v in plots.parts(row).items()}
    return {"latency_ms": round(row["latency_ms"], 3), "stages": [s["stage"] for s in row["stages"]],
            "parts_ms": parts, "notes": row["notes"]}


def fig6(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    """Fig. 6 is the allocation package's (TD3 vs DDPG training curves, ``edgesplit.alloc.fig6``)."""
    from edgesplit.alloc.fig6 import FIG6_ALGOS, FIG6_MODELS, reproduce_fig6

    tick = start("fig. 6 (TD3/DDPG training)", len(FIG6_MODELS) * len(FIG6_ALGOS))
    calls = [0]

    def progress(_message: str) -> None:  # called as each training run starts
        if calls[0]:
            tick()
        calls[0] += 1

    result = reproduce_fig6(out, steps=QUICK_FIG6_STEPS if quick else None, seeds=(seed,) if quick else None,
                            progress=progress)
    tick()
    return result


def sensitivity(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    """TD3 vs exact sub-zones for Ours (paper), edge links as Gb/s vs Mb/s (``sim.sensitivity``);
    the TD3/DDPG rows need fig. 6's runs in ``out/summary.json`` (``reproduce all`` runs fig. 6 first)."""
    from edgesplit.sim.sensitivity import sensitivity_data

    path = out / "summary.json"
    runs = json.loads(path.read_text()).get("fig6", {}).get("runs", []) if path.exists() else []
    threads = (1, 5, 20) if quick else tuple(range(1, 21))
    tasks = (1, 2, 4, 6, 8, 10) if quick else tuple(range(1, 11))
    tick = start("sensitivity", 2 * len(figures.MODELS) + len(figures.MODELS))
    return sensitivity_data(seed, runs, threads, tasks, tick)


def scenario_facts(cluster: Cluster) -> dict[str, Any]:
    """The scenario's numbers (seed's link draws) and the cloud calibration, as the docs quote them."""
    alex = get_spec("alexnet-paper")
    mid = sum(PAPER_CLOUD_LINK_BPS) / 2
    bits = 32 * alex.input[0] * alex.input[1] * alex.input[2]
    return {"servers": len(cluster.servers), "threads": cluster.servers[0].threads,
            "gflops_per_thread": cluster.servers[0].flops_per_thread / 1e9,
            "edge_links_gbps": [round(s.link_bps / 1e9, 1) for s in cluster.servers],
            "cloud_link_mbps": round(cluster.cloud.link_bps / 1e6, 1),
            "cloud_gflops": round(cluster.cloud.flops / 1e9, 1),
            "calibration": {"dads_paper_ms": DADS_FIG7_MS, "input_bits": bits, "mid_link_mbps": mid / 1e6,
                            "input_ms": round(1e3 * bits / mid, 3),
                            "alexnet_gflop": round(sum(alex.layer_flops()) / 1e9, 4),
                            "cloud_gflops": round(calibrate_cloud_flops(alex, DADS_FIG7_MS / 1e3, mid) / 1e9,
                                                  1)}}


RUNNERS: dict[str, Callable[[Path, bool, int, Starter], dict[str, Any]]] = {
    "fig6": fig6, "fig7": fig7, "fig8": fig8, "fig9": fig9, "compare": compare, "sensitivity": sensitivity}


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Summary = dict[str, Any]


def _timed(name: str, run: Callable[[], Summary], quick: bool) -> tuple[Summary, Summary]:
    """``run()`` and its run time: wall and CPU seconds, the UTC start, the 1-minute load average
    (``os.getloadavg``, as ``uptime`` shows it) at the start and at the end, and the command."""
    started, load0 = datetime.now(UTC), os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter(), _cpu_s()
    result = run()
    timing = {"command": f"edgesplit reproduce {name}{' --quick' if quick else ''}",
              "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
              "wall_s": round(time.perf_counter() - wall0, 1), "cpu_s": round(_cpu_s() - cpu0, 1),
              "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count()}
    return result, timing


def reproduce(target: str, out: Path, quick: bool = False, seed: int = 0,
              start: Starter | None = None) -> dict[str, Any]:
    """Run ``target`` (one of TARGETS or ``all``) into ``out``; write and return ``summary.json``.

    ``summary["timing"]`` holds the run time of each target run (and of ``all``); a single target
    is merged into an existing ``summary.json``, so the per-target commands can fill one summary.
    """
    if target != "all" and target not in TARGETS:
        raise InvalidInput(f"unknown figure {target!r}; expected all or one of {', '.join(TARGETS)}")
    out.mkdir(parents=True, exist_ok=True)
    starter: Starter = start or (lambda _d, _n: lambda: None)
    path = out / "summary.json"
    old = json.loads(path.read_text()) if path.exists() and target != "all" else {}

    def run_all() -> dict[str, Any]:
        summary: dict[str, Any] = {"quick": quick, "seed": seed,
                                   "scenario": scenario_facts(scenario("paper", seed)),
                                   "timing": dict(old.get("timing", {}))}
        for name in TARGETS if target == "all" else (target,):
            run = partial(RUNNERS[name], out, quick, seed, starter)
            summary[name], summary["timing"][name] = _timed(name, run, quick)
            # targets after the first may read what the first wrote (sensitivity reads fig6's runs)
            path.write_text(json.dumps({**old, **summary}, indent=1))
        return summary

    summary, total = _timed(target, run_all, quick)
    if target == "all":
        summary["timing"]["all"] = total
    path.write_text(json.dumps({**old, **summary}, indent=1))
    return summary
