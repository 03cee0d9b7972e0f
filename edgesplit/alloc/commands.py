"""``edgesplit train-allocator``, ``edgesplit allocate`` and ``edgesplit bench alloc``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, get_args

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from edgesplit.errors import InvalidInput
from edgesplit.type_aliases import AllocPolicyName

POLICIES_HELP = " | ".join([*get_args(AllocPolicyName), "td3:PATH", "ddpg:PATH"])  # alloc.registry's names

STDERR = Console(stderr=True)


def _print(payload: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload))
        return
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for key, value in payload.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    Console().print(table)


def train_allocator(
    algo: str = typer.Option("td3", help="td3 or ddpg"),
    model: str = typer.Option(..., help="built-in model, e.g. alexnet-paper"),
    scenario: str = typer.Option("paper", help="scenario name or cluster YAML"),
    steps: int = typer.Option(10_000, min=1, help="environment steps"),
    seed: int = typer.Option(0, help="seed of the agent, the noise and the environment"),
    out: Path = typer.Option(..., help="output directory"),
    obs: str = typer.Option("extended", help="extended (eq. 9 + each server's speed and link rate, drawn "
                            "at random per episode) or paper (eq. 9)"),
    action: str = typer.Option("dithered", help="dithered (around the sqrt-FLOPs split, servers rounding "
                               "in turn), share (the same, rounded alike), residual, paper "
                               "(floor(r*R), Algorithm 2) or fair"),
    split: str = typer.Option("edgesplit", help="edgesplit (rows, kernel-rows, channels) or paper"),
    scenario_seed: int = typer.Option(0, help="seed of the scenario's link draws"),
    noise_sigma: float = typer.Option(0.2, help="std of the Gaussian exploration noise (actions in [-1, 1])"),
    eval_every: int = typer.Option(500, help="steps between checks of the deterministic policy (0: none)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Train a TD3/DDPG sub-zone allocator (paper section 4.2); writes model.zip, curve.csv, curve.png."""
    from edgesplit.alloc.train import TrainConfig, check_algo, train

    check_algo(algo)  # before the progress bar
    config = TrainConfig(model=model, algo=algo, steps=steps, seed=seed, scenario=scenario,  # type: ignore[arg-type]
                         scenario_seed=scenario_seed, obs=obs, action=action, split=split,  # type: ignore[arg-type]
                         noise_sigma=noise_sigma, eval_every=eval_every)
    columns = (TextColumn(f"{algo} {model}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=STDERR) as bar:
        task = bar.add_task("train", total=steps)
        summary = train(config, out, progress=lambda n: bar.advance(task, n))
    _print({k: v for k, v in summary.items() if k != "config"}, as_json, f"trained {algo} for {model}")


def allocate_cmd(
    model: str = typer.Option(..., help="built-in model"),
    scenario: str = typer.Option("paper", help="scenario name or cluster YAML"),
    policy: str = typer.Option("exact", help=POLICIES_HELP),
    objective: str = typer.Option("sum", help="sum (eq. 6, single-task latency) or bottleneck"),
    split: str | None = typer.Option(None, help="edgesplit or paper (default: the policy's, else edgesplit)"),
    scenario_seed: int = typer.Option(0, help="seed of the scenario's link draws"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Allocate a model's zone to its convs' sub-zones and report the gap to the certified bound."""
    from edgesplit.alloc.allocate import allocate
    from edgesplit.models import get_spec
    from edgesplit.plan.cluster import resolve_cluster

    cluster = resolve_cluster(scenario, seed=scenario_seed)
    report = allocate(get_spec(model), cluster.servers, policy, objective, split)  # type: ignore[arg-type]
    payload = report.to_dict()
    payload["model"] = model
    payload["scenario"] = scenario
    _print(payload, as_json, f"{policy} allocation for {model}")


def bench_alloc(
    models: str = typer.Option("alexnet-paper,vgg16-paper", help="comma-separated models"),
    scenario: str = typer.Option("paper", help="scenario name or cluster YAML"),
    repeat: int = typer.Option(3, help="runs per case; the best time is reported"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Time the exact allocator (bound + best allocation) per model, split and objective: wall and CPU
    seconds, the best of ``--repeat`` runs (CPU time is what to compare on a shared machine)."""
    from edgesplit.alloc.cost import build_problem
    from edgesplit.alloc.exact import best_allocation
    from edgesplit.models import get_spec
    from edgesplit.plan.cluster import resolve_cluster

    if repeat < 1:
        raise InvalidInput(f"--repeat must be at least 1, got {repeat}")
    servers = resolve_cluster(scenario).servers
    cases: list[dict[str, Any]] = []
    for name in models.split(","):
        for split in ("edgesplit", "paper"):
            problem = build_problem(get_spec(name), servers, split=split)  # type: ignore[arg-type]
            for objective in ("sum", "bottleneck"):
                times, cpu = [], []
                for _ in range(repeat):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    result = best_allocation(problem, objective)  # type: ignore[arg-type]
                    times.append(time.perf_counter() - started)
                    cpu.append(time.process_time() - started_cpu)
                cases.append({"model": name, "split": split, "objective": objective, "seconds": min(times),
                              "cpu_seconds": min(cpu),
                              "latency_s": result.value, "lower_bound_s": result.lower_bound,
                              "gap": result.gap, "method": result.method})
    if as_json:
        typer.echo(json.dumps({"scenario": scenario, "cases": cases}))
        return
    for case in cases:
        STDERR.print(case)


def bench_alloc_policy(
    model: str = typer.Option(..., help="built-in model, e.g. alexnet-paper"),
    policy: str = typer.Option("td3", help=POLICIES_HELP + " (td3 / ddpg alone: the shipped policy)"),
    draws: int = typer.Option(20, help="held-out draws of server speeds and link rates"),
    seed: int = typer.Option(19_019, help="seed of the held-out draws"),
    scenario: str = typer.Option("paper", help="scenario of a policy that is not trained (a trained one "
                                 "is judged on its training scenario)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Judge an allocation policy on held-out draws of server speeds and link rates: per draw the gap to
    the certified bound and to the exact allocator (``edgesplit.alloc.heldout``)."""
    from edgesplit.alloc.heldout import heldout_draws, judge, judge_with
    from edgesplit.alloc.registry import AllocRequest, TrainedPolicy, resolve
    from edgesplit.models import get_spec
    from edgesplit.plan.cluster import resolve_cluster

    chosen = resolve(policy)
    spec = get_spec(model)
    if isinstance(chosen, TrainedPolicy):
        loaded = chosen.load(spec)
        if loaded.meta.get("model") != model:
            raise InvalidInput(f"policy {loaded.path} was trained for {loaded.meta.get('model')}, "
                               f"not {model}")
        result = judge(loaded, heldout_draws(int(loaded.agent.action_space.shape[0]), draws, seed))
    else:
        n_servers = len(resolve_cluster(scenario).servers)
        result = judge_with(lambda servers, problem: chosen.allocation(AllocRequest(spec, servers, problem)),
                            model, heldout_draws(n_servers, draws, seed), scenario)
    result.update(policy_name=policy, seed=seed)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for row in result["draws"]:
        STDERR.print(f"draw {row['draw']:2d}: gap {100 * row['gap']:6.2f}%  to exact "
                     f"{100 * row['gap_to_exact']:6.2f}%  (exact: {100 * row['exact_gap']:.2f}% above the "
                     "bound)")
    STDERR.print({k: v for k, v in result.items() if k.startswith(("median", "worst"))})


def bench_alloc_sweep(
    out: Path = typer.Option(..., help="output directory (one training directory per run, sweep.json, "
                             "curves.png)"),
    models: str = typer.Option("alexnet-paper,vgg16-paper", help="comma-separated models"),
    algos: str = typer.Option("td3,ddpg", help="comma-separated algorithms"),
    seeds: str = typer.Option("0,1,2,3,4", help="comma-separated training seeds"),
    steps: int = typer.Option(10_000, min=1, help="environment steps per run"),
    draws: int = typer.Option(20, help="held-out draws each run is judged on"),
    rejudge: bool = typer.Option(False, "--rejudge", help="no training: recompute the exact values and "
                                 "bounds of OUT/sweep.json's draws and the gaps of its stored latencies"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (the summary)"),
) -> None:
    """Train the shipped recipe for every (algo, seed, model) and judge each on held-out draws: the
    median and worst gaps over seeds, and the reward curves of TD3 and DDPG (``alloc.sweep``)."""
    from edgesplit.alloc.sweep import rejudge_file, sweep
    from edgesplit.alloc.train import check_algo

    if rejudge:
        result = rejudge_file(out / "sweep.json")
        typer.echo(json.dumps({"out": str(out), "summary": result["summary"]}))
        return
    for algo in algos.split(","):
        check_algo(algo)
    result = sweep(out, models.split(","), algos.split(","), [int(x) for x in seeds.split(",")],  # type: ignore[arg-type]
                   steps, draws, progress=lambda line: STDERR.print(f"[sweep] {line}"))
    summary = {"out": str(out), "summary": result["summary"]}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for row in result["summary"]:
        STDERR.print(row)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the allocation commands to the ``edgesplit`` app."""
    app.command("train-allocator")(train_allocator)
    app.command("allocate")(allocate_cmd)
    bench_app.command("alloc")(bench_alloc)
    bench_app.command("alloc-policy")(bench_alloc_policy)
    bench_app.command("alloc-sweep")(bench_alloc_sweep)
