"""CLI: ``edgesplit simulate`` (one simulator run) and ``edgesplit reproduce`` (the paper's figures)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from edgesplit.errors import InvalidInput
from edgesplit.sim.reproduce import TARGETS, Starter, reproduce
from edgesplit.sim.run import SimRequest, run_simulation

err = Console(stderr=True)
PROGRESS_FROM = 5_000  # tasks from which simulate shows a progress bar (about 5 s)


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Starter]:
    """A rich progress display on stderr; yields ``start(description, total) -> tick``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not enabled, transient=False) as bar:
        def start(description: str, total: int) -> Any:
            task = bar.add_task(description, total=total)
            return lambda: bar.advance(task)

        yield start


def simulate(
    model: list[str] = typer.Option(["alexnet-paper"], help="built-in model; repeat for several CNNs "
                                    "(their zones then split each server by FLOPs share, paper 3.2)"),
    model_file: Path | None = typer.Option(None, help="a model spec JSON file (instead of --model)"),
    scenario: str = typer.Option("paper", help="paper, edge-1g, or a cluster YAML file"),
    tasks: int = typer.Option(10, min=1, max=1_000_000, help="tasks per model (about 1 ms of CPU each)"),
    mode: str = typer.Option("ours", help="ours-paper | ours | no-split | dads | coedge | channels"),
    pipeline: str | None = typer.Option(None, help="async | lockstep (default: lockstep for ours-paper, "
                                        "async otherwise)"),
    threads: int = typer.Option(1, min=1, help="threads per task for no-split and dads"),
    rate: float = typer.Option(0.0, min=0.0, help="Poisson arrivals per second per model; 0: all at t=0"),
    priorities: int = typer.Option(3, min=1, help="priority levels drawn per task (1 is the highest)"),
    aging: float = typer.Option(0.0, min=0.0, help="priority aging: one level per this many s (0: off)"),
    link_spread: float = typer.Option(0.0, min=0.0, max=0.9, help="per-transfer link-rate draw: "
                                      "uniform in [1-s, 1+s] x the link's rate (0: the scenario's rates)"),
    seed: int = typer.Option(0, help="seed of the scenario's links, arrivals, priorities and link draws"),
    records: Path | None = typer.Option(None, help="write every task's record (JSON lines) here"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Simulate tasks through one method on a cluster (SimPy), with per-stage breakdowns."""
    req = SimRequest(models=tuple(model), model_file=model_file, scenario=scenario, tasks=tasks, mode=mode,
                     pipeline=pipeline, threads=threads, rate=rate, priorities=priorities, aging=aging,
                     link_spread=link_spread, seed=seed)
    total = tasks * (1 if model_file is not None else len(model))
    if total < PROGRESS_FROM:
        report, result = run_simulation(req)
    else:  # about 1 ms of CPU a task: a bar on stderr from a few seconds on
        columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err) as bar:
            task = bar.add_task("simulate", total=total)
            report, result = run_simulation(req, lambda done: bar.update(task, completed=done))
    if records is not None:
        with records.open("w") as f:
            for t in result.tasks:
                f.write(json.dumps(t.to_dict()) + "\n")
    if as_json:
        print(json.dumps(report))
        return
    for name, m in report["models"].items():
        s = m["summary"]
        err.print(f"[bold]{name}[/]: {report['mode']} ({report['pipeline']}), {s['tasks']} tasks; "
                  f"single task predicted {m['predicted_single_task_ms']:.3f} ms; " + "; ".join(m["notes"]))
        table = Table(title=f"{name}: latency {s['latency_ms']['mean']:.3f} ms mean, "
                      f"{s['latency_ms']['p95']:.3f} p95, makespan {s['makespan_ms']:.3f} ms, "
                      f"{s['throughput_per_s']:.1f} tasks/s")
        keys = ("busy_ms", "compute_ms", "transfer_ms", "overhead_ms", "link_wait_ms", "zone_wait_ms")
        table.add_column("stage (means, ms)")
        for key in keys:
            table.add_column(key[:-3].replace("_", " "), justify="right")
        for st in s["stages"]:
            table.add_row(str(st["stage"]), *(f"{st[k]:.4f}" for k in keys))
        Console().print(table)
        if s["cloud"]:
            Console().print("cloud: " + ", ".join(f"{k} {v:.4f}" for k, v in s["cloud"].items()))


def reproduce_cmd(
    figure: str = typer.Argument(..., help="fig6 | fig7 | fig8 | fig9 | compare | sensitivity | all, or "
                                 "report: fill the docs' generated blocks from OUT/summary.json"),
    out: Path = typer.Option(Path("out/reproduce"), help="folder for the CSV, PNG and summary.json"),
    quick: bool = typer.Option(False, help="fewer points, steps and samples (seconds; used by the tests)"),
    seed: int = typer.Option(0, help="seed of the scenario, the tasks and the weights"),
    check: bool = typer.Option(False, help="report: change nothing; exit 1 if a doc block differs from "
                               "OUT/summary.json (run times excepted)"),
    structure: bool = typer.Option(False, help="report --check: compare with the numbers masked (for a "
                                   "--quick summary)"),
    root: Path = typer.Option(Path("."), help="report: the repository root (README.md, docs/)"),
    as_json: bool = typer.Option(False, "--json", help="the summary as one JSON object on stdout"),
) -> None:
    """Reproduce the paper's figures 6-9, ours vs the paper's method and the sensitivity study as CSV +
    PNG files and summary.json; ``report`` renders the docs' tables from that summary."""
    if figure == "report":
        _report(out, root, check, structure)
        return
    if figure != "all" and figure not in TARGETS:
        raise InvalidInput(f"unknown figure {figure!r}; expected all, report or one of {', '.join(TARGETS)}")
    with _progress() as start:
        summary = reproduce(figure, out, quick, seed, start)
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} in {out}")
        Console().print_json(json.dumps(summary))


def _report(out: Path, root: Path, check: bool, structure: bool) -> None:
    from edgesplit.sim.docs import check_report, write_report

    if not (out / "summary.json").exists():
        raise InvalidInput(f"{out / 'summary.json'} does not exist; run "
                           f"`edgesplit reproduce all --out {out}` first")
    if not check:
        for name in write_report(root, out):
            err.print(f"wrote {name}")
        return
    problems = check_report(root, json.loads((out / "summary.json").read_text()), structure)
    for line in problems:
        err.print(line)
    if problems:
        raise typer.Exit(1)
    err.print("the docs agree with " + str(out / "summary.json") + (" (structure)" if structure else ""))


def bench_sim(
    tasks: int = typer.Option(2000, min=10, max=1_000_000, help="tasks per timed simulation"),
    saturation: int = typer.Option(400, min=10, help="tasks in the saturation batch of the comparison"),
    seed: int = typer.Option(0, help="scenario and task seed"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Ours vs the paper's method in the simulator, and the simulator's own speed (wall time)."""
    from edgesplit.sim.bench import run_bench

    with _progress() as start:
        report = run_bench(tasks, saturation, seed, start)
    if as_json:
        print(json.dumps(report))
    else:
        Console().print_json(json.dumps(report))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(simulate)
    app.command("reproduce")(reproduce_cmd)
    bench_app.command("sim")(bench_sim)
