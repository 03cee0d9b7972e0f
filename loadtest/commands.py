"""CLI: ``edgesplit bench sweep`` (customer-density sweep of the local stack with locust)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgesplit.errors import InvalidInput
from loadtest.mix import DEFAULT_MIX, parse_mix, parse_users
from loadtest.sweep import MODES, SweepConfig, run_sweep
from services.orchestrator.settings import SERVED_MAX_BATCH

err = Console(stderr=True)


def _config(modes: str, users: str, step_s: float, out: Path, model: str, api: str, priority_mix: str,
            executors: int, threads: int, think_s: float, seed: int, max_batch: int = 1,
            express: bool = True) -> SweepConfig:
    names = [m.strip() for m in modes.split(",") if m.strip()]
    if not names or any(m not in MODES for m in names):
        raise InvalidInput(f"--modes {modes!r}: expected a comma list of {', '.join(MODES)}")
    if api not in ("tasks", "v2"):
        raise InvalidInput(f"--api {api!r}: expected tasks or v2")
    if step_s <= 0 or executors < 1 or threads < 1 or think_s < 0 or not 1 <= max_batch <= 256:
        raise InvalidInput("--step-s must be > 0, --executors and --threads >= 1, --think-s >= 0, "
                           "--max-batch 1 to 256")
    try:
        parse_mix(priority_mix)
        counts = tuple(parse_users(users))
    except ValueError as e:
        raise InvalidInput(str(e)) from e
    chosen = tuple(MODES[MODES.index(m)] for m in names)
    return SweepConfig(modes=chosen, users=counts, step_s=step_s, out=out, model=model,
                       api=api,  # type: ignore[arg-type]
                       mix=priority_mix, executors=executors, threads=threads, think_s=think_s, seed=seed,
                       orchestrator_extra={"max_batch": max_batch, "express_lane": express})


def _print(summary: dict[str, Any]) -> None:
    out = Console(width=None if sys.stdout.isatty() else 120)
    urgent = summary["urgent_priority"]
    table = Table(title=f"{summary['model']}: priority {urgent} p95 (ms) by customers")
    table.add_column("mode")
    for u in summary["users"]:
        table.add_column(f"{u} users")
    table.add_column("p95 ratio")
    for mode, m in summary["modes"].items():
        p95 = m.get("urgent_p95_ms", {})
        table.add_row(mode, *[str(p95.get(str(u), "-")) for u in summary["users"]],
                      str(m.get("urgent_p95_ratio", m.get("error", "-")))[:60])
    out.print(table)
    out.print(f"failures {summary['failures']}; CSV {summary['csv']}; plot {summary['png']}")


def sweep(
    modes: str = typer.Option(",".join(MODES), help="comma list of serving modes"),
    users: str = typer.Option("1,2,4,8,16", help="comma list of customer densities (locust users)"),
    step_s: float = typer.Option(20.0, help="seconds of load per density"),
    out: Path = typer.Option(Path("out/sweep"), help="folder for the CSV, the PNG and locust's files"),
    model: str = typer.Option("alexnet-paper", help="built-in model the stack serves"),
    api: str = typer.Option("tasks", help="tasks (POST /v1/tasks + long-poll) or v2 (KServe V2 infer)"),
    priority_mix: str = typer.Option(DEFAULT_MIX, help="PRIORITY:WEIGHT,... (1 = most urgent)"),
    executors: int = typer.Option(2, help="executors in the local stack"),
    threads: int = typer.Option(2, help="worker threads per executor"),
    think_s: float = typer.Option(0.0, help="pause of a customer between a result and its next task, s"),
    seed: int = typer.Option(0, help="seed of the weights, the samples and the customers' choices"),
    max_batch: int = typer.Option(SERVED_MAX_BATCH, help="the orchestrator's dynamic batching: tasks of "
                                                         "one model run as one unit (1 = off; the "
                                                         "deployments' default)"),
    express: bool = typer.Option(True, "--express/--no-express",
                                 help="with batching, the orchestrator's express lane for priority-1 tasks"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Latency by priority vs customer density for each serving mode, on the real local stack."""
    cfg = _config(modes, users, step_s, out, model, api, priority_mix, executors, threads, think_s, seed,
                  max_batch, express)
    summary = run_sweep(cfg, progress=lambda msg: err.print(msg))
    if as_json:
        print(json.dumps(summary))
    else:
        _print(summary)
    if summary["failures"] or summary["errors"]:
        raise typer.Exit(1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    bench_app.command("sweep")(sweep)
