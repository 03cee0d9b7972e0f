"""CLI: ``edgesplit bench adapt`` (the allocator's recovery after an executor slows down)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

err = Console(stderr=True)


def adapt(
    model: str = typer.Option("digits-cnn", help="built-in model to serve"),
    executors: int = typer.Option(3, min=2, help="executors of the local stack"),
    threads: int = typer.Option(4, min=1, help="threads (sub-zone capacity) of each executor"),
    delay: float = typer.Option(0.05, min=0.0, help="per-slice delay injected into one executor, s"),
    period: float = typer.Option(1.0, min=0.05, help="the allocator's re-planning period, s"),
    policy: str = typer.Option("td3", help="an allocation policy: td3 | exact | even | ... "
                               "(edgesplit.alloc.registry.ALLOC_POLICIES)"),
    train_steps: int = typer.Option(2000, min=0, help="TD3 training steps for this cluster (0: the shipped "
                                    "policy)"),
    before: int = typer.Option(30, min=3, help="tasks before the slowdown"),
    after: int = typer.Option(30, min=0, help="tasks after recovery"),
    window: int = typer.Option(10, min=1, help="tasks in the rolling median that decides recovery"),
    timeout: float = typer.Option(120.0, min=1.0, help="longest wait for recovery, s"),
    seed: int = typer.Option(0, help="seed of the stack's weights, the input and the training"),
    testbed: bool = typer.Option(False, "--testbed", help="on testbed hosts (root): lower one host's CPU "
                                 "quota instead of injecting a delay"),
    cpus: float = typer.Option(0.5, help="--testbed: CPU quota of each edge host, cores"),
    slow_factor: float = typer.Option(4.0, min=1.0,
                                      help="--testbed: the slowed host keeps 1/this of its quota"),
    cloud_cpus: float | None = typer.Option(None, min=0.01, help="--testbed: CPU quota of the cloud "
                                            "host, cores (default: the testbed bench's 0.5)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Slow one executor of a local stack down and time the allocator's recovery of the latency."""
    from edgesplit.alloc.registry import ALLOC_POLICIES
    from tooling.allocator_bench import Adapt, AdaptConfig

    if policy not in ALLOC_POLICIES.names:
        raise typer.BadParameter(f"policy must be one of {', '.join(ALLOC_POLICIES.names)}, got {policy!r}")
    config = AdaptConfig(model=model, executors=executors, threads=threads, delay_s=delay, period_s=period,
                         measure_s=min(0.25, period), policy=policy, train_steps=train_steps,
                         before_tasks=before, after_tasks=after, window=window, timeout_s=timeout, seed=seed,
                         testbed=testbed, cpus=cpus, slow_factor=slow_factor, cloud_cpus=cloud_cpus)
    result = Adapt(config, lambda line: err.print(f"[adapt] {line}")).run()
    if as_json:
        print(json.dumps(result))
        return
    lat = result["latency"]
    err.print(f"slowed {result['slowed']['executor']}: plan shift after {result['plan_shift_s']} s, "
              f"recovery after {result['recovery_s']} s")
    for phase in ("before", "during", "after"):
        err.print(f"{phase:>7}: median {lat[phase]['median_ms']} ms, p90 {lat[phase]['p90_ms']} ms "
                  f"({lat[phase]['n']} tasks)")
    err.print(f"served: {result['decisions']['served']}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    bench_app.command("adapt")(adapt)
