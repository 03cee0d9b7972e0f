"""CLI of the local stack: ``edgesplit up``, ``edgesplit demo``, ``edgesplit bench e2e``."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from edgesplit import models
from edgesplit.errors import InvalidInput
from edgesplit.plan.modes import SERVING_MODES
from edgesplit.plan.planner import PLANNER_FAMILIES
from edgesplit.type_aliases import PipelineMode, ServingModeName, Split
from services.common.channels import PREFIX_PATTERN
from services.orchestrator.settings import SERVED_MAX_BATCH, OrchestratorSettings

err = Console(stderr=True)
CONV_GROUPS = "one conv per stage, a sub-zone each (needs threads >= convs)"
HALO_MAX = ("executors run a slice whose worker bands would recompute more than this fraction of its "
            "FLOPs on one worker with intra-op threads (default: the executor's, 0.1)")
ALLOCATOR = ("also run the allocator service: it measures the executors, re-plans and publishes the plans "
             "and quotas (the orchestrator then takes its plans from Redis)")
SHIPPED_WEIGHTS = Path(models.__file__).resolve().parent / "weights"  # package data of edgesplit.models
STATE_DIR = Path.home() / ".local" / "state" / "edgesplit" / "redis"
PREFIX = ("Redis key prefix (default: a new one per run, so stacks sharing a Redis stay apart); tasks left "
          "queued or running at exit stay under it, and a later `up` with --prefix set to it resumes them")
STATE = "where a redis-server started here keeps its append-only file"
MAX_BATCH = ("dynamic batching: up to this many queued tasks of one model run as one unit, priority-1 "
             "tasks never wait for a batch, and beside them batches hold at most "
             f"{OrchestratorSettings.model_fields['urgent_max_batch'].default} (1 = off)")
FSYNC = ("appendfsync of a redis-server started here: everysec (a crash may lose the last second of "
         "writes) or always (none lost, slower writes; docs/ARCHITECTURE.md, Guarantees)")


def _models(raw: str) -> list[str]:
    names = list(dict.fromkeys(m.strip() for m in raw.split(",") if m.strip()))
    if not names:
        raise InvalidInput("--models: give at least one model")
    for name in names:
        models.get_spec(name)  # ModelNotFound (one line) before any process starts
    return names


def _port_free(port: int) -> None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise InvalidInput(f"port {port} is in use: pick another with --port")


def up(
    executors: int = typer.Option(2, min=1, help="number of executor processes"),
    mode: ServingModeName = typer.Option("split", parser=SERVING_MODES.parse,
                                         help=SERVING_MODES.help()),
    pipeline: PipelineMode = typer.Option("async", help="async | lockstep"),
    models: str = typer.Option("alexnet-paper", help="comma list of built-in models"),
    threads: int = typer.Option(2, min=1, help="threads (sub-zone capacity) of each executor"),
    split: Split = typer.Option("edgesplit", parser=PLANNER_FAMILIES.parse,
                                help=f"planner: {PLANNER_FAMILIES.help()}"),
    conv_groups: bool = typer.Option(False, "--conv-groups", help=CONV_GROUPS),
    port: int = typer.Option(8080, min=1, max=65535, help="orchestrator port"),
    redis_url: str = typer.Option("redis://127.0.0.1:6379/0", help="started here if nothing answers"),
    aging: float = typer.Option(0.0, help="seconds per priority level of aging (0 = strict)"),
    log_dir: Path | None = typer.Option(None, help="where the processes log (default: a temp dir)"),
    allocator: bool = typer.Option(False, "--allocator", help=ALLOCATOR),
    prefix: str | None = typer.Option(None, help=PREFIX),
    state_dir: Path = typer.Option(STATE_DIR, help=STATE),
    fsync: str = typer.Option("everysec", help=FSYNC),
    max_batch: int = typer.Option(SERVED_MAX_BATCH, min=1, max=256,
                                  help=MAX_BATCH + " (the chart's default)"),
) -> None:
    """Start redis (if needed), the cloud, the executors, the orchestrator (and with ``--allocator`` the
    allocator service); restart any of them that dies (backoff 1 s to 30 s); on Ctrl-C or SIGTERM let
    the orchestrator drain, then stop all."""
    from tooling.stack import (
        AllocatorGroup,
        ExecutorGroup,
        LocalStack,
        OrchestratorGroup,
        RedisGroup,
        StackSettings,
        redis_durability,
    )

    _port_free(port)
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidInput(f"--redis-url {redis_url[:80]!r}: expected redis://host:port/db (or rediss://, "
                           f"unix://)")
    if prefix is not None and not re.fullmatch(PREFIX_PATTERN, prefix):
        raise InvalidInput(f"--prefix {prefix[:70]!r}: expected 1 to 64 letters, digits and _ . : - (no glob "
                           f"character: the stack deletes its keys by pattern when it stops)")
    if fsync not in ("everysec", "always"):
        raise InvalidInput(f"--fsync {fsync!r}: expected everysec or always")
    stack = LocalStack(StackSettings(
        models=tuple(_models(models)), split=split, executor=ExecutorGroup(count=executors, threads=threads),
        orchestrator=OrchestratorGroup(mode=mode, pipeline=pipeline, port=port,
                                       extra={"aging_s": aging, "conv_groups": conv_groups,
                                              "max_batch": max_batch}),
        allocator=AllocatorGroup(enabled=allocator),
        redis=RedisGroup(url=redis_url, prefix=prefix, state_dir=state_dir, fsync=fsync),
        weights_dir=SHIPPED_WEIGHTS, log_dir=log_dir, keep_logs=True, supervise=True))
    try:
        with err.status("starting the stack..."):
            stack.start()
        console = Console()
        console.print(f"edgesplit is up: orchestrator {stack.url} (docs at {stack.url}/docs), dynamic "
                      f"batching {f'up to {max_batch} tasks' if max_batch > 1 else 'off'}")
        for svc in stack.services():
            console.print(f"  {svc.name:14s} {svc.url}  log {svc.log_path}")
        console.print(f"  cluster file   {stack.cluster_path}\n  redis          {redis_url} (prefix "
                      f"{stack.prefix}; {redis_durability(redis_url)})\nPress Ctrl-C to stop.")
        seen = 0
        while True:
            time.sleep(1.0)
            for name, _ in stack.restarts[seen:]:
                err.print(f"[yellow]{name} exited and was restarted (logs in {stack.log_dir})")
            seen = len(stack.restarts)
    except KeyboardInterrupt:
        err.print("draining and stopping...")
    finally:
        stack.stop()
        if stack.kept_tasks:
            err.print(f"{stack.kept_tasks} task(s) still queued: they stay in {redis_url} under "
                      f"{stack.prefix}; `edgesplit up --prefix {stack.prefix}` runs them")


def _priority_table(stats: dict[int, dict[str, float]], model: str) -> Table:
    table = Table(title=f"{model}: end-to-end latency by priority (1 = most urgent)")
    for col in ("priority", "tasks", "done", "median ms", "max ms", "mean queued ms"):
        table.add_column(col, justify="right")
    for p, s in stats.items():
        table.add_row(str(p), str(int(s["tasks"])), str(int(s["done"])), f"{1000 * s['median_e2e_s']:.1f}",
                      f"{1000 * s['max_e2e_s']:.1f}", f"{1000 * s['mean_queue_s']:.1f}")
    return table


def demo(
    executors: int = typer.Option(3, min=1, help="number of executors"),
    tasks: int = typer.Option(12, min=1, help="tasks of the mixed-priority workload"),
    model: str = typer.Option("alexnet-paper", help="model of the workload"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Start a stack, run a mixed-priority workload and one real digit image, print, stop."""
    from edgesplit.models import get_spec
    from edgesplit.models.build import load_model
    from services.orchestrator.client import OrchestratorClient
    from tooling.stack import ExecutorGroup, LocalStack, StackSettings
    from tooling.workload import classify_sample, mixed_priorities, random_input

    spec, digits = get_spec(model), get_spec("digits-cnn")
    names = list(dict.fromkeys([model, "digits-cnn"]))
    with err.status(f"starting redis, the cloud, {executors} executors and the orchestrator..."):
        settings = StackSettings(models=tuple(names), executor=ExecutorGroup(count=executors, threads=2),
                                 weights_dir=SHIPPED_WEIGHTS)
        stack = LocalStack(settings).start()
    try:
        with OrchestratorClient(stack.url) as oc, err.status("running the workload..."):
            from edgesplit import wire

            oc.result(oc.submit(wire.encode(random_input(spec, 99)), model, 1))  # warm-up
            stats = mixed_priorities(oc, spec, tasks)
            weights = SHIPPED_WEIGHTS / "digits-cnn.safetensors"
            sample = classify_sample(oc, digits, load_model(digits, weights if weights.is_file() else None))
            route = oc.models()["models"][model]["route"]
    finally:
        stack.stop()
    report = {"model": model, "executors": executors, "route": route, "by_priority": stats, "sample": sample}
    if as_json:
        print(json.dumps(report))
        return
    console = Console()
    console.print(_priority_table(stats, model))
    steps = ", ".join(f"layers {s['layers'][0]}-{s['layers'][1]} {s['strategy']} on {s['servers']}"
                      for s in route["steps"]) if route else "?"
    console.print(f"plan: {steps}")
    console.print(f"sample: a scikit-learn digit labelled {sample['label']} -> digits-cnn top-1 class "
                  f"{sample['top1']} (p = {sample['prob']:.3f}), {1000 * sample['e2e_s']:.1f} ms; "
                  f"max |logit - local torch| = {sample['max_abs_diff_vs_local']:.2g}")


def bench_e2e(
    model: str = typer.Option("alexnet-paper", help="built-in model"),
    executors: int = typer.Option(2, min=1, help="number of executors"),
    threads: int = typer.Option(2, min=1, help="threads of each executor"),
    runs: int = typer.Option(30, min=3, help="sequential tasks for the idle latency"),
    tasks: int = typer.Option(120, min=1, help="tasks submitted at once for the saturation throughput"),
    gap_ms: float = typer.Option(50.0, min=0.0, help="idle gap between sequential tasks (and torch "
                                                     "forwards), ms"),
    max_batch: int = typer.Option(SERVED_MAX_BATCH, min=1, max=256, help=MAX_BATCH),
    mode: ServingModeName = typer.Option("split", parser=SERVING_MODES.parse,
                                         help=SERVING_MODES.help()),
    pipeline: PipelineMode = typer.Option("async", help="async | lockstep"),
    split: Split = typer.Option("edgesplit", parser=PLANNER_FAMILIES.parse,
                                help=f"planner: {PLANNER_FAMILIES.help()}"),
    conv_groups: bool = typer.Option(False, "--conv-groups", help=CONV_GROUPS),
    cloud_threads: int = typer.Option(2, min=1, help="torch threads of the cloud service"),
    halo_max: float | None = typer.Option(None, min=0.0, help=HALO_MAX),
    torch_batches: str = typer.Option("1,2,4,8,16,32", help="batch sizes of the batched torch loops"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """End-to-end latency (idle) and throughput (saturated) of the stack vs torch at 2 threads.

    Torch is timed the fair way (``tooling.e2e_torch``): in fresh processes with the stack stopped,
    before the stack starts and after it stops, one forward after each ``--gap-ms`` as the stack's
    client leaves between its tasks, the better of OpenMP's default wait policy and PASSIVE.
    ``latency_ratio`` is the stack's idle median over torch's (idle, same gap), ``latency_ratio_hot``
    over torch's back-to-back loop; ``throughput_ratio`` the stack's saturation throughput over a
    batch-1 torch loop, ``throughput_ratio_batched`` over the best batched torch loop.
    """
    from edgesplit.models import get_spec
    from services.orchestrator.client import OrchestratorClient
    from tooling.e2e_torch import combine, fair_reference
    from tooling.stack import CloudGroup, ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings
    from tooling.workload import idle_latency, saturation

    spec, gap_s = get_spec(model), gap_ms / 1000.0
    try:
        batches = sorted({int(b) for b in torch_batches.split(",") if b.strip()})
    except ValueError as e:
        raise InvalidInput(f"--torch-batches {torch_batches!r}: expected sizes like 1,4,16") from e
    if not batches or batches[0] < 1:
        raise InvalidInput(f"--torch-batches {torch_batches!r}: expected sizes of 1 or more")
    with err.status("torch (2 threads) in fresh processes, before the stack..."):
        before = fair_reference(model, 2, runs, gap_s, batches=batches)
    with err.status(f"starting the stack ({executors} executors, {threads} threads each)..."):
        stack = LocalStack(StackSettings(
            models=(model,), split=split,
            executor=ExecutorGroup(count=executors, threads=threads,
                                   extra={} if halo_max is None else {"halo_max": halo_max}),
            cloud=CloudGroup(threads=cloud_threads),
            orchestrator=OrchestratorGroup(mode=mode, pipeline=pipeline,
                                           extra={"conv_groups": conv_groups, "max_batch": max_batch}),
        )).start()
    try:
        with OrchestratorClient(stack.url) as oc:
            route = oc.models()["models"][model]["route"]
            # saturation first: its priority-3 tasks then meet no urgent traffic (the idle tasks are
            # priority 1), so batches run whole (EDGESPLIT_ORCHESTRATOR_URGENT_WINDOW_S, docs/API.md)
            with err.status(f"saturation ({tasks} tasks at once)..."):
                sat = saturation(oc, spec, tasks, stack.pids(), warmup=3)
            with err.status(f"idle latency ({runs} tasks, one at a time, {gap_ms:g} ms apart)..."):
                lat = idle_latency(oc, spec, runs, gap_s=gap_s)
    finally:
        stack.stop()
    with err.status("torch (2 threads) in fresh processes, after the stack..."):
        after = fair_reference(model, 2, runs, gap_s, batches=batches)
    ref = combine(before, after)
    report: dict[str, Any] = {
        "model": model, "executors": executors, "threads": threads, "mode": mode, "pipeline": pipeline,
        "split": split, "conv_groups": conv_groups, "cloud_threads": cloud_threads, "halo_max": halo_max,
        "max_batch": max_batch, "gap_s": gap_s, "route": route, "torch": ref, "stack_idle": lat,
        "stack_saturated": sat,
        "latency_ratio": lat["median_s"] / ref["idle_median_s"],
        "latency_ratio_hot": lat["median_s"] / ref["hot_median_s"],
        "throughput_ratio": sat["throughput_per_s"] / ref["batch1_per_s"],
        "throughput_ratio_batched": sat["throughput_per_s"] / ref["best_per_s"],
        # CPU per task, torch's batch-1 loop over the stack's (a throughput ratio on 2 busy cores that
        # other load disturbs less: docs/BENCHMARKS.md, end to end)
        "cpu_ratio": ref["cpu_s_per_image"]["1"] / sat["cpu_s_per_task_total"]
        if sat["cpu_s_per_task_total"] > 0 else None,
        "target_latency_ratio": 1.5, "target_throughput_ratio": 1.3}
    report["meets_target"] = report["latency_ratio"] <= 1.5 and report["throughput_ratio"] >= 1.3
    if as_json:
        print(json.dumps(report))
        return
    _e2e_table(report)


def _e2e_table(report: dict[str, Any]) -> None:
    ref, lat, sat = report["torch"], report["stack_idle"], report["stack_saturated"]
    table = Table(title=f"{report['model']}: stack ({report['executors']} executors x {report['threads']} "
                        f"threads, max_batch {report['max_batch']}) vs torch (2 threads, fresh process)")
    for col in ("", "stack", "torch", "ratio"):
        table.add_column(col, justify="right")
    table.add_row(f"median latency, idle, {1000 * report['gap_s']:g} ms apart (ms)",
                  f"{1000 * lat['median_s']:.1f}", f"{1000 * ref['idle_median_s']:.1f}",
                  f"{report['latency_ratio']:.2f}")
    table.add_row("  torch back to back (ms)", "", f"{1000 * ref['hot_median_s']:.1f}",
                  f"{report['latency_ratio_hot']:.2f}")
    table.add_row("throughput, saturated vs a batch-1 loop (tasks/s)", f"{sat['throughput_per_s']:.1f}",
                  f"{ref['batch1_per_s']:.1f}", f"{report['throughput_ratio']:.2f}")
    table.add_row(f"  vs the best batched loop (batch {ref['best_batch']})", "", f"{ref['best_per_s']:.1f}",
                  f"{report['throughput_ratio_batched']:.2f}")
    Console().print(table)
    b, a = ref["before"], ref["after"]
    Console().print(f"torch before / after the stack: idle {1000 * b['idle_median_s']:.1f} / "
                    f"{1000 * a['idle_median_s']:.1f} ms, batch-1 loop {b['batch1_per_s']:.1f} / "
                    f"{a['batch1_per_s']:.1f} tasks/s; the stack's mean batch at saturation "
                    f"{sat['mean_batch']:.1f}")
    cpu = ", ".join(f"{k} {1000 * v:.1f}" for k, v in sat["cpu_s_per_task"].items())
    Console().print(f"CPU ms per task at saturation: {cpu}; torch's batch-1 loop "
                    f"{1000 * ref['cpu_s_per_image']['1']:.1f} ms an image")
    parts = ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in lat["parts_ms"].items())
    Console().print(f"one idle task, medians in ms: {parts}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command()(up)
    app.command()(demo)
    bench_app.command("e2e")(bench_e2e)
