"""CLI: ``edgesplit plan`` (a model's plan and predicted latency) and ``edgesplit bench plan``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgesplit.errors import InvalidPlan
from edgesplit.models.zoo import resolve_spec
from edgesplit.plan.cluster import resolve_cluster
from edgesplit.plan.planner import PLANNER_FAMILIES, Plan, make_plan
from edgesplit.type_aliases import Split

err = Console(stderr=True)


def _console() -> Console:
    """stdout console; 120 columns when not a terminal so tables are not cut at rich's default 80."""
    return Console(width=None if sys.stdout.isatty() else 120)


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3f}"


def _runs(values: tuple[int, ...], ranges: bool = False) -> str:
    """Compact list: ``0-7`` for consecutive indices, ``12x8`` for 8 equal values."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        step = 1 if ranges else 0
        while j + 1 < len(values) and values[j + 1] == values[j] + step:
            j += 1
        if j == i:
            out.append(str(values[i]))
        else:
            out.append(f"{values[i]}-{values[j]}" if ranges else f"{values[i]}x{j - i + 1}")
        i = j + 1
    return ",".join(out)


def _print_plan(plan: Plan, scenario_name: str) -> None:
    out = _console()
    table = Table(title=f"{plan.model} on {scenario_name}: split {plan.split} (times in ms)")
    for col in ("layers", "strategy", "servers", "parts", "threads", "compute", "transfer", "overhead",
                "stage"):
        table.add_column(col)
    for st, lat in zip(plan.stages, plan.predicted.stages, strict=True):
        table.add_row(f"[{st.start},{st.stop})", st.strategy, _runs(st.servers, ranges=True),
                      _runs(st.parts), _runs(st.threads), _ms(lat.compute_s),
                      _ms(lat.transfer_s), _ms(lat.overhead_s), _ms(lat.total_s))
    out.print(table)
    p = plan.predicted
    out.print(f"edge {_ms(p.edge_s)} ms + cloud transfer {_ms(p.cloud_transfer_s)} ms + cloud compute "
              f"{_ms(p.cloud_compute_s)} ms + cloud overhead {_ms(p.cloud_overhead_s)} ms = "
              f"[bold]{_ms(p.total_s)} ms[/bold]")


def plan_command(
    model: str = typer.Option("alexnet-paper", help="built-in model name"),
    model_file: Path | None = typer.Option(None, help="a model spec JSON file (overrides --model)"),
    scenario_name: str = typer.Option("paper", "--scenario", help="paper, edge-1g, or a cluster YAML file"),
    split: Split = typer.Option("edgesplit", parser=PLANNER_FAMILIES.parse,
                                help=f"planner family: {PLANNER_FAMILIES.help()}"),
    servers: int | None = typer.Option(None, help="number of servers (default: all of the scenario)"),
    seed: int = typer.Option(0, help="seed of the scenario's link draws"),
    one_conv_per_group: bool = typer.Option(False, help="force the paper's grouping, one conv per stage"),
    exclude: list[str] = typer.Option([], help="server name to leave out (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Plan a model on a cluster and print the stages and the predicted latency (eq. 1-5)."""
    spec = resolve_spec(model, model_file)
    cluster = resolve_cluster(scenario_name, seed, servers)
    plan = make_plan(spec, cluster, split, exclude=frozenset(exclude),
                     one_conv_per_group=one_conv_per_group)
    if as_json:
        report: dict[str, Any] = {"scenario": scenario_name, "seed": seed, "servers": len(cluster.servers),
                                  "edge_ms": 1e3 * plan.predicted.edge_s,
                                  "total_ms": 1e3 * plan.predicted.total_s, "plan": plan.to_dict()}
        print(json.dumps(report))
    else:
        _print_plan(plan, scenario_name)


def bench_plan_command(
    repeats: int = typer.Option(5, help="runs per timing (the median is reported)"),
    seed: int = typer.Option(0, help="seed of the scenarios' link draws"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Our plan vs the paper's (predicted latency) and planner wall time on 8 and 64 servers."""
    from edgesplit.plan.bench import bench_plan

    if repeats < 1:
        raise InvalidPlan(f"--repeats must be at least 1, got {repeats}")
    with err.status("planning and timing..."):
        report = bench_plan(repeats, seed)
    if as_json:
        print(json.dumps(report))
        return
    out = _console()
    table = Table(title="predicted edge latency, ms (paper's split vs ours)")
    for col in ("model", "scenario", "paper", "ours", "ratio", "ours 1 conv/group", "ours stages"):
        table.add_column(col)
    for c in report["comparisons"]:
        table.add_row(c["model"], c["scenario"], f"{c['paper_edge_ms']:.3f}", f"{c['ours_edge_ms']:.3f}",
                      f"{c['ratio']:.2f}x", f"{c['ours_one_conv_per_group_edge_ms']:.3f}",
                      "; ".join(c["ours_stages"]))
    out.print(table)
    wall = Table(title=f"planner wall time, ms (median of {repeats})")
    for col in ("model", "servers", "paper plan", "edgesplit plan"):
        wall.add_column(col)
    for p in report["planner_wall"]:
        wall.add_row(p["model"], str(p["servers"]), f"{1e3 * p['paper_plan_s']:.2f}",
                     f"{1e3 * p['edgesplit_plan_s']:.2f}")
    out.print(wall)
    for s in report["split_wall"]:
        out.print(f"split of {s['units']} units on {s['servers']} servers: Algorithm 1 "
                  f"{1e6 * s['algorithm1_s']:.0f} us, optimal {1e6 * s['optimal_vectorised_s']:.0f} us "
                  f"(water-filling {1e6 * s['optimal_waterfill_s']:.0f} us); bottleneck "
                  f"{s['algorithm1_bottleneck_ms']:.3f} ms vs optimal {s['optimal_bottleneck_ms']:.3f} ms")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``plan`` to the app and ``plan`` to ``edgesplit bench``."""
    app.command("plan")(plan_command)
    bench_app.command("plan")(bench_plan_command)
