"""The executor's benchmarks: RPC overhead against a bare FastAPI echo, and the sub-zone worker pool
against torch's own intra-op threads. Timings live here, never in tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.split import compute_slice, conv_groups, crop_input
from services.common.http import ServiceClient, new_http_client
from services.common.models import load_part
from services.common.settings import cpu_limit
from services.executor.client import ExecutorClient
from services.executor.pool import SubZone
from services.executor.work import slice_flops
from tooling.proc import running, start_echo, start_executor

Progress = Callable[[str], None]
RPC_TARGET = 1.5  # executor overhead at most 1.5x a bare echo (issue 4)


def _stats_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": 1e3 * statistics.median(ordered), "p90": 1e3 * ordered[int(0.9 * (len(ordered) - 1))],
            "mean": 1e3 * statistics.fmean(ordered), "min": 1e3 * ordered[0]}


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await call()
    return time.perf_counter() - t0


async def _rpc_rounds(ex_url: str, echo_url: str, token: str, shape: tuple[int, ...], rounds: int,
                      warmup: int) -> dict[str, list[float]]:
    """Alternate an executor echo, a bare echo and a real slice (same client, same bytes) ``rounds``
    times; and the bare echo through an ``httpx.AsyncClient``, the client the services used before
    (``services.common.http`` says why they moved to aiohttp)."""
    import httpx

    spec = get_spec("alexnet-paper")
    start, stop = conv_groups(spec)[2]  # conv3: its input is 256x18x18, the benchmark's tensor
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    body = wire.encode(x)
    sl = wire.canonical_slice(spec, "rows", start, stop, (0, spec.shapes()[stop][1]))
    http = new_http_client()
    ex = ExecutorClient(ex_url, token=token, http=http)
    bare = ServiceClient(echo_url, http=http)
    npy = {"Content-Type": wire.CONTENT_TYPE}
    with_slice = x.shape[1:] == sl.in_shape(spec)[1:]  # the real slice only fits the default shape
    times: dict[str, list[float]] = {"executor": [], "bare": [], "bare_httpx": [], "slice_minus_compute": []}
    other = httpx.AsyncClient()
    try:
        for i in range(warmup + rounds):
            t_ex = await _timed(lambda: ex.request("POST", "/v1/echo", content=body, headers=npy))
            t_bare = await _timed(lambda: bare.request("POST", "/echo", content=body, headers=npy))
            t_httpx = await _timed(lambda: other.post(f"{echo_url}/echo", content=body, headers=npy))
            if i >= warmup:
                times["executor"].append(t_ex)
                times["bare"].append(t_bare)
                times["bare_httpx"].append(t_httpx)
            if with_slice:
                t0 = time.perf_counter()
                run = await ex.run_slice_timed(spec.name, sl, x, subzone=start)
                if i >= warmup:
                    times["slice_minus_compute"].append(time.perf_counter() - t0 - run.compute_s)
    finally:
        await http.aclose()
        await other.aclose()
    return times


def bench_rpc(rounds: int, warmup: int, shape: tuple[int, ...], progress: Progress) -> dict[str, Any]:
    """Median round trip of an NPY tensor through the executor (compute excluded) vs a bare echo."""
    token = secrets.token_hex(16)
    progress("starting an executor and a bare FastAPI echo on loopback")
    ex = start_executor("bench-executor", token=token, models="alexnet-paper", threads=1)
    with running(ex, start_echo()) as (_, echo):
        progress(f"{rounds} rounds of {'x'.join(map(str, shape))} float32")
        times = asyncio.run(_rpc_rounds(ex.url, echo.url, token, shape, rounds, warmup))
    ex_ms, bare_ms = _stats_ms(times["executor"]), _stats_ms(times["bare"])
    ratio = ex_ms["median"] / bare_ms["median"]
    out: dict[str, Any] = {"shape": list(shape), "bytes": int(np.prod(shape)) * 4, "rounds": rounds,
                           "executor_echo_ms": ex_ms, "bare_echo_ms": bare_ms, "ratio": ratio,
                           "bare_echo_httpx_ms": _stats_ms(times["bare_httpx"]),
                           "target": RPC_TARGET, "meets_target": ratio <= RPC_TARGET,
                           "load_average": os.getloadavg()[0]}
    if times["slice_minus_compute"]:
        out["slice_minus_compute_ms"] = _stats_ms(times["slice_minus_compute"])
    return out


Variant = tuple[Callable[[], Any], Callable[[], Any]]  # (prepare, untimed; run, timed)


def _interleaved_ms(variants: dict[str, Variant], repeats: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of each variant, run in turn every round (a load change hits them all)."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + repeats):
        for name, (prepare, fn) in variants.items():
            prepare()
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                samples[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(v) for name, v in samples.items()}


def bench_subzone(model: str, stage: int, rows: tuple[int, int] | None, repeats: int, warmup: int,
                  progress: Progress) -> dict[str, Any]:
    """One slice of a conv group: a sub-zone of 1 and 2 workers vs torch with 1 and 2 intra-op threads."""
    spec = get_spec(model)
    start, stop = conv_groups(spec)[stage]
    rows = rows or (0, spec.shapes()[stop][1])
    dep = load_part(spec, "edge", None, 0)
    sl = wire.canonical_slice(spec, "rows", start, stop, rows)
    with torch.no_grad():
        image = torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(0))
        x = crop_input(dep.module[:start](image), sl).contiguous()
    loop = asyncio.new_event_loop()
    zones = {k: SubZone(model, stage, k) for k in (1, 2)}

    def settle(threads: int) -> Callable[[], None]:
        def prepare() -> None:
            torch.set_num_threads(threads)
            time.sleep(0.05)  # let the OpenMP threads of the previous variant stop spinning

        return prepare

    def in_zone(k: int) -> Variant:  # the main thread idles in the event loop meanwhile
        return settle(1), (lambda: loop.run_until_complete(zones[k].run(dep, sl, x)))

    def torch_threads(k: int) -> Variant:
        return settle(k), (lambda: compute_slice(dep.module, spec, sl, x))

    progress(f"{repeats} rounds: sub-zones of 1 and 2 workers, torch with 1 and 2 threads")
    try:
        ms = _interleaved_ms({"sz1": in_zone(1), "sz2": in_zone(2), "t1": torch_threads(1),
                              "t2": torch_threads(2)}, repeats, warmup)
    finally:
        torch.set_num_threads(1)
        for zone in zones.values():
            zone.stop()
        loop.close()
    result = {"subzone_ms": {"1": ms["sz1"], "2": ms["sz2"]}, "torch_ms": {"1": ms["t1"], "2": ms["t2"]}}
    sz, tt = result["subzone_ms"], result["torch_ms"]
    gflop = slice_flops(spec, sl) / 1e9
    return {"model": model, "stage": stage, "layers": [start, stop], "rows": list(rows),
            "input_shape": list(x.shape), "gflop": gflop, "repeats": repeats, "cpus": cpu_limit(),
            "load_average": os.getloadavg()[0],
            **result, "ratio": {k: sz[k] / tt[k] for k in sz},
            "speedup_2_vs_1": {"subzone": sz["1"] / sz["2"], "torch": tt["1"] / tt["2"]},
            "gflops_per_thread": {f"subzone_{k}": gflop / (sz[k] / 1e3) / int(k) for k in sz}}

