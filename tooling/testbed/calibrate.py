"""What the testbed measures before it writes the cluster file (module run as a fresh process).

* ``per_core``: FLOPS of one unlimited core running a model's edge layers and its FC layers with one
  torch thread (the fastest of ``runs`` forwards after a warm-up: a core's own speed, as free as
  possible of other work on the machine); with ``cgroup``, the same inside a host's cgroup, under its
  quota (the median run). Their ratio over the quota is the quota's *efficiency*: what a host
  really computes per core of quota (CFS throttling, the period's phase), which the cluster file's
  figures include. A host's FLOPS is its quota times this.
  It runs as ``python -m tooling.testbed.calibrate MODEL...`` so that nothing of the caller's
  process (threads, caches) colours it.
* ``slice_overhead``: what a slice request to an executor costs beyond its compute and its bytes on
  the link: the round trip of a one-row slice from the gateway, less the compute and queue wait the
  executor reports and the bytes' time at the link's rate (HTTP, auth, NPY decode and encode, the
  hand-off to a worker, all inside the host's CPU quota).
* ``echo_overhead``: the same for the cloud, from a tiny NPY body to its ``/v1/echo``.
* ``stage_times``: a stage of n one-row slices sent at once from the gateway, as the orchestrator
  sends a stage's requests, for n = 1, 2, 4, ... and every host: the median stage time. What it
  grows by with n, beyond the growth the latency model already has, is the cluster's fan-out cost
  (``Cluster.fanout``): the gateway handles the n requests one after another, and the hosts' bursts
  share the machine's physical cores.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from edgesplit import wire

if TYPE_CHECKING:
    from edgesplit.models.spec import ModelSpec
    from edgesplit.split import Slice


def _forward_s(module: object, x: object, runs: int, fastest: bool) -> float:
    """The fastest (``fastest``) or the median of ``runs`` forwards after 3 warm-ups. Unlimited, the
    fastest is a core's own speed, as free as possible of whatever else the machine runs; under a
    quota, the median, since when a forward starts within the CFS period is part of what it costs."""
    import torch

    times = []
    with torch.no_grad():
        for i in range(runs + 3):
            t0 = time.perf_counter()
            module(x)  # type: ignore[operator]
            if i >= 3:
                times.append(time.perf_counter() - t0)
    return min(times) if fastest else statistics.median(times)


def measure(models: Sequence[str], runs: int = 15, fastest: bool = True) -> dict[str, float]:
    """FLOPS of this process (one torch thread) on the edge layers and on the FC layers of ``models``
    (FLOPs-weighted)."""
    import torch

    from edgesplit.models import get_spec
    from edgesplit.models.build import load_model

    torch.set_num_threads(1)
    edge_flops = edge_s = fc_flops = fc_s = 0.0
    for name in models:
        spec = get_spec(name)
        module = load_model(spec, seed=0)
        edge, fc = module[: spec.n_edge], module[spec.n_edge :]
        x = torch.randn(1, *spec.input)
        with torch.no_grad():
            features = edge(x)
        edge_flops += spec.edge_flops()
        edge_s += _forward_s(edge, x, runs, fastest)
        fc_flops += spec.cloud_flops()
        fc_s += _forward_s(fc, features, runs, fastest)
    return {"edge_flops_per_core": edge_flops / edge_s, "fc_flops_per_core": fc_flops / fc_s}


def per_core(models: Sequence[str], runs: int = 15, cgroup: Path | None = None) -> dict[str, float]:
    """``measure`` in a fresh process (the services' OpenMP settings): on one unlimited core (the
    fastest run), or inside ``cgroup`` under its quota (the median run)."""
    from tooling.testbed.cgroups import shell_prefix

    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "tooling.testbed.calibrate", *models, "--runs", str(runs)]
    if cgroup is not None:
        argv = ["sh", "-c", shell_prefix(cgroup, None) + shlex.join([*argv, "--median"])]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


PROFILE_MAX_EDGE_FLOPS = 10e9  # larger models (vgg16-paper) take minutes to profile: left at eq. (1)


def profiles(models: Sequence[str], points: int = 10, reps: int = 5) -> dict[str, dict[str, Any]]:
    """The slice efficiency profile (``edgesplit.split.profile``) of each model small enough to profile
    in seconds, over every group the planner may form (pairs of ``search.cut_points``) and every
    strategy; keyed by model, in the cluster file's layout. Thread CPU time: a quota does not enter
    it, so it is measured once, here, for every host."""
    from edgesplit.models import get_spec
    from edgesplit.models.build import load_model
    from edgesplit.plan.search import cut_points
    from edgesplit.split import STRATEGIES
    from edgesplit.split.profile import measure_profile

    out = {}
    for name in models:
        spec = get_spec(name)
        if spec.edge_flops() > PROFILE_MAX_EDGE_FLOPS:
            continue
        points_at = cut_points(spec)
        groups = [(points_at[i], points_at[j]) for j in range(len(points_at)) for i in range(j)]
        module = load_model(spec, seed=0)
        out[name] = measure_profile(spec, module, groups, STRATEGIES, reps=reps, points=points).to_dict()
    return out


def echo_overhead(url: str, token: str, runs: int = 25) -> float:
    """Median seconds of a tiny ``/v1/echo`` round trip (after a few warm-up calls)."""
    body = wire.encode(np.zeros((1, 1, 1, 1), dtype=np.float32))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": wire.CONTENT_TYPE}
    times = []
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        for i in range(runs + 5):
            t0 = time.perf_counter()
            r = client.post(f"{url}/v1/echo", content=body, headers=headers)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            if i >= 5:
                times.append(elapsed)
            time.sleep(0.02)  # an idle gap, as between a task's stages: the quota refills
    return statistics.median(times)


def one_row_slice(spec: ModelSpec) -> tuple[Slice, np.ndarray]:
    """The probe of the overhead measurements: the first one-row ``rows`` slice of the model's last
    group of layers, and a seeded input of its shape."""
    from edgesplit.plan.search import cut_points
    from edgesplit.split import make_slices, part_total

    start, stop = cut_points(spec)[-2:]
    sl = make_slices(spec, start, stop, "rows", (1, part_total(spec, start, stop, "rows") - 1))[0]
    x = np.random.default_rng(0).standard_normal((1, *sl.in_shape(spec)[1:])).astype(np.float32)
    return sl, x


def slice_overhead(url: str, token: str, model: str, link_bps: float, runs: int = 25) -> float:
    """Median seconds of a one-row slice's round trip beyond its compute, wait and link time."""
    from edgesplit.models import get_spec
    from edgesplit.plan.latency import slice_load

    spec = get_spec(model)
    sl, x = one_row_slice(spec)
    load = slice_load(spec, sl)
    params = {**wire.slice_to_params(sl), "subzone": "0"}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": wire.CONTENT_TYPE}
    link_s = 8.0 * (load.in_bytes + load.out_bytes) / link_bps
    spent = []
    with httpx.Client(timeout=60.0, trust_env=False) as client:
        for i in range(runs + 5):
            t0 = time.perf_counter()
            r = client.post(f"{url}/v1/slices/{model}", params=params, content=wire.encode(x),
                            headers=headers)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            inside = float(r.headers["X-Compute-Seconds"]) + float(r.headers["X-Wait-Seconds"])
            if i >= 5:
                spent.append(max(0.0, elapsed - inside - link_s))
            time.sleep(0.02)
    return statistics.median(spent)


def stage_counts(hosts: int) -> list[int]:
    """1, 2, 4, ... below ``hosts``, and ``hosts``."""
    out, n = [], 1
    while n < hosts:
        out.append(n)
        n *= 2
    return [*out, hosts]


def stage_times(urls: Sequence[str], token: str, model: str, runs: int = 20) -> dict[int, float]:
    """Median seconds of a stage of n one-row slices (module docstring) for each n of ``stage_counts``."""
    import asyncio

    from edgesplit.models import get_spec
    from services.common.http import new_http_client
    from services.executor.client import ExecutorClient

    sl, x = one_row_slice(get_spec(model))

    async def measure() -> dict[int, float]:
        http = new_http_client(60.0)  # one pool for every host, as the orchestrator's
        clients = [ExecutorClient(url, token, 60.0, http) for url in urls]
        out = {}
        try:
            for n in stage_counts(len(urls)):
                times = []
                for i in range(runs + 3):
                    t0 = time.perf_counter()
                    await asyncio.gather(*(c.run_slice(model, sl, x, 0) for c in clients[:n]))
                    if i >= 3:
                        times.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.03)  # an idle gap, as between tasks: the quotas refill
                out[n] = statistics.median(times)
        finally:
            await http.aclose()
        return out

    return asyncio.run(measure())


def main(argv: Sequence[str]) -> None:
    args = list(argv)
    runs = 15
    fastest = "--median" not in args
    args = [a for a in args if a != "--median"]
    if "--runs" in args:
        i = args.index("--runs")
        runs = int(args[i + 1])
        del args[i : i + 2]
    print(json.dumps(measure(args or ["alexnet-paper"], runs, fastest)))


if __name__ == "__main__":
    main(sys.argv[1:])
