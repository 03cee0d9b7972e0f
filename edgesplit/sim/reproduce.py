"""``edgesplit reproduce``: the paper's figures 6-9 and our comparison as CSV + PNG + a summary.

Each target writes ``<target>.csv`` and ``<target>.png`` into the output folder (fig. 6 writes what
``edgesplit.alloc`` writes) and returns a summary of the numbers the paper states in its text;
``summary.json`` collects them. ``quick`` runs a few points only (for the test suite).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgesplit.errors import InvalidInput
from edgesplit.plan.cluster import scenario
from edgesplit.sim import figures, plots

TARGETS: tuple[str, ...] = ("fig6", "fig7", "fig8", "fig9", "compare")
QUICK_FIG6_STEPS = 200
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
    rows = figures.fig7_data(scenario("paper", seed), threads=threads,
                             tick=start("fig. 7", len(figures.MODELS) * len(threads)))
    write_csv(out / "fig7.csv", rows)
    plots.plot_fig7(rows, out / "fig7.png")
    summary: dict[str, Any] = {}
    for model in figures.MODELS:
        mine = [r for r in rows if r["model"] == model]
        at1 = {r["method"]: round(r["latency_ms"], 3) for r in mine if r["threads"] == 1}
        ours = at1["Ours (paper)"]
        ordered = sorted(mine, key=lambda r: r["threads"])
        cross = {b: next((r["threads"] for r in ordered if r["method"] == b and r["latency_ms"] <= ours),
                         None)
                 for b in ("No Split", "DADS")}
        summary[model] = {"at_1_thread_ms": at1,
                          "times_higher_than_ours_paper": {b: round(at1[b] / ours - 1, 2) for b in cross},
                          "baseline_reaches_ours_paper_at_threads": cross}
    return summary


def fig8(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    tasks = (1, 2, 6) if quick else tuple(range(1, 11))
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
            "total_ms": {m: [round(total(m, n), 3) for n in tasks] for m in
                         ("No Split", "DADS", "Ours (paper)", "Ours (edgesplit)")},
            "tasks": list(tasks)}
    return summary


def fig9(out: Path, quick: bool, seed: int, start: Starter) -> dict[str, Any]:
    from edgesplit.sim.accuracy import fig9_data  # torch only here

    runs = 4 + 2 * (1 if quick else 3)
    rows = fig9_data(quick, seed, tick=start("fig. 9 (torch)", 2 * runs))
    write_csv(out / "fig9.csv", rows)
    plots.plot_fig9(rows, out / "fig9.png")
    summary: dict[str, Any] = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == ds]
        summary[ds] = {"exact_min_agreement": min(r["agreement"] for r in mine if r["exact"]),
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
                                      "ours": round(r["edge_throughput_per_s"], 1)}}
    return summary


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


RUNNERS: dict[str, Callable[[Path, bool, int, Starter], dict[str, Any]]] = {
    "fig6": fig6, "fig7": fig7, "fig8": fig8, "fig9": fig9, "compare": compare}


def reproduce(target: str, out: Path, quick: bool = False, seed: int = 0,
              start: Starter | None = None) -> dict[str, Any]:
    """Run ``target`` (one of TARGETS or ``all``) into ``out``; write and return ``summary.json``."""
    if target != "all" and target not in TARGETS:
        raise InvalidInput(f"unknown figure {target!r}; expected all or one of {', '.join(TARGETS)}")
    out.mkdir(parents=True, exist_ok=True)
    starter: Starter = start or (lambda _d, _n: lambda: None)
    summary: dict[str, Any] = {"quick": quick, "seed": seed}
    for name in TARGETS if target == "all" else (target,):
        summary[name] = RUNNERS[name](out, quick, seed, starter)
    path = out / "summary.json"
    old = json.loads(path.read_text()) if path.exists() and target != "all" else {}
    path.write_text(json.dumps({**old, **summary}, indent=1))
    return summary
