"""CLI of the testbed: ``edgesplit testbed up | down | status | schema`` and ``edgesplit bench testbed``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

import typer
from rich.console import Console

from edgesplit.errors import InvalidInput
from edgesplit.type_aliases import ServingModeName, Split

err = Console(stderr=True)
testbed_app = typer.Typer(no_args_is_help=True, help="Edge hosts emulated on this machine: network "
                          "namespaces, shaped links (tbf) and CPU quotas (cgroups). Needs root.")
DEFAULT_OUT = Path("docs/benchmarks/testbed")
FILE_HELP = ("testbed description (YAML; `edgesplit testbed schema` prints its schema); "
             "default: --edges hosts of --cpus")


def _description(file: Path | None, edges: int, cpus: float, edge_mbps: float, cloud_cpus: float,
                 cloud_mbps: float, prefix: str, models: str, port: int) -> Any:
    from tooling.testbed.description import load_description, parse_description

    if file is not None:
        return load_description(file)
    names = [m.strip() for m in models.split(",") if m.strip()]
    edge = {"cpus": cpus, "up_mbps": edge_mbps, "down_mbps": edge_mbps}
    return parse_description({"prefix": prefix, "edges": [edge] * edges, "models": names,
                              "cloud": {"cpus": cloud_cpus, "up_mbps": cloud_mbps, "down_mbps": cloud_mbps},
                              "gateway": {"port": port}}, "testbed options")


@testbed_app.command("up")
def up(
    file: Path | None = typer.Option(None, "--file", "-f", help=FILE_HELP),
    edges: int = typer.Option(3, min=1, max=32, help="edge hosts (without --file)"),
    cpus: float = typer.Option(0.2, help="CPU quota of each edge host, cores (without --file)"),
    edge_mbps: float = typer.Option(1000.0, help="edge link rate each way, Mbit/s (without --file)"),
    cloud_cpus: float = typer.Option(1.0, help="CPU quota of the cloud host, cores (without --file)"),
    cloud_mbps: float = typer.Option(100.0, help="edge-cloud link rate each way, Mbit/s (without --file)"),
    prefix: str = typer.Option("estb", help="name prefix of every namespace, link and cgroup"),
    models: str = typer.Option("alexnet-paper", help="comma list of built-in models (without --file)"),
    port: int = typer.Option(8080, help="orchestrator port on the gateway (without --file)"),
    mode: ServingModeName = typer.Option("split", help="split | no-split | dads"),
    split: Split = typer.Option("edgesplit", help="edgesplit | paper"),
    allocator: bool = typer.Option(False, "--allocator", help="also run the allocator on the gateway"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Build the hosts, start the services in them, measure, write the cluster file; leave it running
    (``edgesplit testbed down`` removes it)."""
    from tooling.testbed import cgroups, net

    desc = _description(file, edges, cpus, edge_mbps, cloud_cpus, cloud_mbps, prefix, models, port)
    net.preflight(desc.prefix)  # before the services' imports: a refusal is one line and exit 2
    cgroups.version()
    from tooling.stack import AllocatorGroup, OrchestratorGroup, StackSettings
    from tooling.testbed.bed import Testbed, status

    settings = StackSettings(split=split, orchestrator=OrchestratorGroup(mode=mode),
                             allocator=AllocatorGroup(enabled=allocator))
    bed = Testbed(desc, settings, progress=lambda line: err.print(line))
    t0 = time.monotonic()
    with err.status(f"building {len(desc.edges)} edge hosts and measuring them..."):
        bed.start()
    report = {**status(desc.prefix), "api_token": bed.api_token, "seconds": round(time.monotonic() - t0, 1),
              "per_core": bed.per_core, "overheads_s": bed.overheads,
              "controller_overhead_s": bed.controller_overhead_s, "stage_times_s": bed.stage_times,
              "fanout_s": bed.fanout_s}
    if as_json:
        print(json.dumps(report))
        return
    console = Console()
    console.print(f"testbed {desc.prefix} is up in {report['seconds']} s: orchestrator {report['url']}, "
                  f"API token {bed.api_token}")
    for host, info in report["hosts"].items():
        console.print(f"  {host:6s} {info['address']:15s} {info['cpus']} core(s), "
                      f"up {info['up_bps'] / 1e6:.0f} / down {info['down_bps'] / 1e6:.0f} Mbit/s")
    console.print(f"  cluster file {report['cluster_file']}\n  logs {bed.log_dir}\n"
                  f"Stop it with: edgesplit testbed down --prefix {desc.prefix}")


@testbed_app.command("down")
def down(prefix: str = typer.Option("estb", help="name prefix given to `testbed up`"),
         redis_url: str = typer.Option("redis://127.0.0.1:6379/0", help="where its keys are")) -> None:
    """Stop the testbed's processes and remove its namespaces, links, cgroups, state and Redis keys,
    also after a kill -9 of ``testbed up``."""
    from tooling.stack import delete_keys
    from tooling.testbed import net
    from tooling.testbed.bed import remove_state, teardown
    from tooling.testbed.description import check_prefix

    check_prefix(prefix)  # it names what is killed and removed: never an empty prefix, '..' or a glob
    net.preflight(prefix)
    removed = teardown(prefix)
    remove_state(prefix)
    keys = delete_keys(redis_url, f"{prefix}:")
    err.print(f"removed {len(removed)} object(s) and {keys} Redis key(s) of testbed {prefix}")
    for line in removed:
        err.print(f"  {line}")


@testbed_app.command("status")
def status_cmd(prefix: str = typer.Option("estb", help="name prefix given to `testbed up`"),
               as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout")) -> None:
    """Hosts, addresses, the link rates and CPU quotas read back from the kernel, throttling, processes."""
    from tooling.testbed.bed import status

    report = status(prefix)
    if as_json:
        print(json.dumps(report))
        return
    if not report["hosts"] and not report["namespaces"]:
        print(f"no testbed {prefix}")
        return
    for host, info in report["hosts"].items():
        throttled = info["throttling"].get("nr_throttled", 0)
        print(f"{host:6s} {info['address']:15s} cpus={info['cpus']} up={info['up_bps']} "
              f"down={info['down_bps']} throttled_periods={throttled} pids={info['pids']}")


@testbed_app.command("schema")
def schema() -> None:
    """Print the JSON schema of the testbed description."""
    from tooling.testbed.description import description_schema

    print(description_schema())


def bench_testbed(
    hosts: str = typer.Option("1,2,4,8", help="comma list of edge host counts"),
    modes: str = typer.Option("no-split,dads,paper,edgesplit", help="comma list of serving modes"),
    models: str = typer.Option("alexnet-paper", help="comma list of built-in models"),
    runs: int = typer.Option(20, min=3, help="single tasks per point (median)"),
    burst: int = typer.Option(30, min=4, help="tasks submitted at once for the throughput"),
    out: Path = typer.Option(DEFAULT_OUT, help="where testbed.json, .csv and .png go"),
    cloud_cpus: float = typer.Option(0.5, help="CPU quota of the cloud host, cores (see docs/BENCHMARKS.md)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
) -> None:
    """Fig. 7 measured: single-task latency and throughput per (model, hosts, mode) on edge hosts of 0.2
    core with 1 Gb/s links and a 100 Mb/s cloud link, beside the simulator's prediction."""
    from edgesplit.sim.served import SERVED_MODES, ServedMode
    from tooling.testbed.bench import run_bench, write_outputs

    try:
        counts = sorted({int(h) for h in hosts.split(",") if h.strip()})
    except ValueError as e:
        raise InvalidInput(f"--hosts {hosts!r}: expected a comma list of host counts, e.g. 1,2,4,8") from e
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in SERVED_MODES]
    if not counts or min(counts) < 1 or unknown or not chosen:
        raise InvalidInput(f"--hosts: positive counts; --modes: some of {', '.join(SERVED_MODES)} "
                           f"(unknown: {unknown})")
    names = [m.strip() for m in models.split(",") if m.strip()]
    out.mkdir(parents=True, exist_ok=True)  # before minutes of measuring, not after
    if not os.access(out, os.W_OK):
        raise InvalidInput(f"--out {out}: this user cannot write there")
    result = run_bench(counts, cast(list[ServedMode], chosen), names, runs, burst,
                       progress=lambda line: err.print(line), cloud_cpus=cloud_cpus)
    files = write_outputs(result, out)
    if as_json:
        print(json.dumps({**result, "files": [str(f) for f in files]}))
        return
    for p in result["points"]:
        print(f"{p['model']:14s} {p['hosts']:2d} {p['mode']:9s} measured {p['measured_ms']:8.1f} ms  "
              f"predicted {p['predicted_ms']:8.1f} ms  ({100 * p['error']:+.0f}%)  "
              f"{p['throughput_per_s']:.1f} tasks/s")
    print(json.dumps(result["summary"]), file=sys.stderr)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.add_typer(testbed_app, name="testbed")
    bench_app.command("testbed")(bench_testbed)
