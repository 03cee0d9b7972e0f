"""CLI: ``edgesplit bench rpc`` and ``edgesplit bench executor`` (timings, never in tests)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from edgesplit.errors import InvalidInput

err = Console(stderr=True)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split("x"))
    except ValueError as e:
        raise InvalidInput(f"shape {text!r} must look like 1x256x18x18") from e
    if not shape or min(shape) < 1:
        raise InvalidInput(f"shape {text!r} must have positive sizes")
    return shape


def bench_rpc(
    rounds: int = typer.Option(300, min=10, help="measured round trips of each kind"),
    warmup: int = typer.Option(30, min=0, help="round trips before measuring"),
    shape: str = typer.Option("1x256x18x18", help="float32 tensor shape sent each time"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Executor round trip without compute vs a bare FastAPI echo of the same bytes (target <= 1.5x).

    Starts a real executor and a bare echo app on loopback and alternates their requests.
    """
    from tooling.executor_bench import bench_rpc as run

    with err.status("bench rpc") as status:
        out = run(rounds, warmup, _shape(shape), lambda m: status.update(f"bench rpc: {m}"))
    if as_json:
        print(json.dumps(out))
        return
    ex, bare = out["executor_echo_ms"], out["bare_echo_ms"]
    print(f"{out['shape']} float32 ({out['bytes']} bytes), {out['rounds']} rounds, median round trip:")
    print(f"  executor /v1/echo  {ex['median']:.3f} ms (p90 {ex['p90']:.3f})")
    print(f"  bare FastAPI echo  {bare['median']:.3f} ms (p90 {bare['p90']:.3f})")
    print(f"  bare echo, httpx   {out['bare_echo_httpx_ms']['median']:.3f} ms (the services' old client)")
    print(f"  ratio {out['ratio']:.2f} (target <= {out['target']})")
    if "slice_minus_compute_ms" in out:
        print(f"  real conv3 slice minus its compute: {out['slice_minus_compute_ms']['median']:.3f} ms")


def bench_executor(
    model: str = typer.Option("alexnet-paper", help="built-in model"),
    stage: int = typer.Option(1, min=0, help="conv group (0 = first conv); 1 = alexnet-paper conv2"),
    rows: str | None = typer.Option(None, help="output rows 'a,b' of the group (default: all)"),
    repeats: int = typer.Option(30, min=3, help="measured runs of each variant"),
    warmup: int = typer.Option(3, min=0, help="runs before measuring"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """A conv slice in a sub-zone of 1 and 2 workers vs torch with 1 and 2 threads (ratio near 1 = free).

    In one process; the four variants run in turn every round so that a load change hits them all.
    """
    from tooling.executor_bench import bench_subzone

    band = None
    if rows is not None:
        a, b = (int(v) for v in rows.split(","))
        band = (a, b)
    with err.status("bench executor") as status:
        out = bench_subzone(model, stage, band, repeats, warmup,
                            lambda m: status.update(f"bench executor: {m}"))
    if as_json:
        print(json.dumps(out))
        return
    print(f"{model} layers {out['layers']} rows {out['rows']}: {out['gflop']:.3f} GFLOP, median ms")
    for k in ("1", "2"):
        print(f"  {k} worker(s): sub-zone {out['subzone_ms'][k]:.2f}  torch {out['torch_ms'][k]:.2f}  "
              f"ratio {out['ratio'][k]:.2f}")
    print(f"  speed-up 2 vs 1: sub-zone {out['speedup_2_vs_1']['subzone']:.2f}, "
          f"torch {out['speedup_2_vs_1']['torch']:.2f} ({out['cpus']} CPUs visible)")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    bench_app.command("rpc")(bench_rpc)
    bench_app.command("executor")(bench_executor)
