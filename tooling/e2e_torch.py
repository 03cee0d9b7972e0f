"""The torch side of ``edgesplit bench e2e``, timed the fair way: a fresh process, the stack stopped.

Timing torch in the benchmark's own process while the stack's processes ran gave 122 ms against 35 ms
for the same forward (DESIGN.md section 5; issue 17): the stack's idle processes, their threads and
their memory still weigh on the machine. So the benchmark runs this module as a subprocess of its own
before the stack starts and again after it stops, and compares the stack with both.

One run measures, with ``threads`` torch threads:

* ``idle``: one single-image forward after each ``gap_s`` of sleep, the idle gap the stack's client
  leaves between its sequential tasks (caches and cores as an idle server finds them);
* ``hot``: back-to-back single-image forwards (the torch process at its warmest) and their rate,
  the batch-1 loop's throughput;
* ``batched``: back-to-back forwards of B images for each B in ``batches``, images per second; the
  best of them is the throughput a batching torch server could reach on this machine;
* ``cpu_s_per_image``: this process's CPU seconds per image at batch 1 and at each B (all its
  threads), which other load on a shared machine changes less than wall-clock rates (the stack's
  counterpart is ``tooling.workload.saturation``'s ``cpu_s_per_task``).

Each side is measured twice, in two processes: with OpenMP's default wait policy (its threads spin
a while between parallel regions: fastest when the process has the cores to itself) and with
``OMP_WAIT_POLICY=PASSIVE`` (what the stack's services ran with until 2026-11-30); the
reference takes the better of the two for every figure (``best_of``), so the ratios never flatter
the stack. On the shared development machine under load, the default policy took 286 ms per forward
where PASSIVE took 112 ms.

``python -m tooling.e2e_torch --model alexnet-paper --threads 2 --runs 30 --gap-s 0.05`` prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

BATCHES = (1, 2, 4, 8, 16, 32)


def _inputs(shape: Sequence[int], batch: int, seed: int) -> Any:
    import torch

    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    return torch.from_numpy(x)


def _cpu_per_image(module: Any, x: Any, n: int) -> float:
    """This process's CPU seconds per image over ``n`` forwards of ``x`` (all its threads)."""
    c0 = time.process_time()
    _loop_s(module, x, n)
    return (time.process_time() - c0) / (n * x.shape[0])


def _loop_s(module: Any, x: Any, n: int) -> list[float]:
    import torch

    times = []
    with torch.no_grad():
        for _ in range(n):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return times


def measure(model: str, threads: int = 2, runs: int = 30, gap_s: float = 0.05, seed: int = 0,
            batches: Sequence[int] = BATCHES, budget_s: float = 1.0) -> dict[str, Any]:
    """The three measurements of the module docstring, in this process (call it in a fresh one).
    Seconds and images per second; each batched loop runs for about ``budget_s``."""
    import torch

    from edgesplit.models import get_spec
    from edgesplit.models.build import load_model

    torch.set_num_threads(threads)
    spec = get_spec(model)
    module = load_model(spec, seed=seed)
    x = _inputs(spec.input, 1, seed)
    _loop_s(module, x, 5)
    idle = []
    for _ in range(runs):
        time.sleep(gap_s)
        idle += _loop_s(module, x, 1)
    hot = _loop_s(module, x, runs)
    cpu = {"1": _cpu_per_image(module, x, runs)}
    rates: dict[str, float] = {}
    for b in batches:
        xb = _inputs(spec.input, b, seed + b)
        _loop_s(module, xb, 2)
        times: list[float] = []
        while len(times) < 3 or sum(times) < budget_s:
            times += _loop_s(module, xb, 1)
        rates[str(b)] = b * len(times) / sum(times)
        cpu[str(b)] = _cpu_per_image(module, xb, 3)
    best = max(rates, key=lambda k: rates[k])
    return {"model": model, "threads": threads, "runs": runs, "gap_s": gap_s,
            "idle_median_s": statistics.median(idle), "idle_p90_s": float(np.percentile(idle, 90)),
            "hot_median_s": statistics.median(hot), "batch1_per_s": runs / sum(hot),
            "batched_per_s": rates, "best_batch": int(best), "best_per_s": rates[best],
            "cpu_s_per_image": cpu}


def in_fresh_process(model: str, threads: int = 2, runs: int = 30, gap_s: float = 0.05, seed: int = 0,
                     batches: Sequence[int] = BATCHES, timeout_s: float = 600.0,
                     omp_wait_policy: str | None = None) -> dict[str, Any]:
    """``measure`` in a new Python process (nothing of this one's torch state, threads or memory);
    ``omp_wait_policy``: its ``OMP_WAIT_POLICY`` (None: OpenMP's default)."""
    cmd = [sys.executable, "-m", "tooling.e2e_torch", "--model", model, "--threads", str(threads),
           "--runs", str(runs), "--gap-s", repr(gap_s), "--seed", str(seed),
           "--batches", ",".join(str(b) for b in batches)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if omp_wait_policy is not None:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the torch baseline process failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["omp_wait_policy"] = omp_wait_policy or "default"
    return result


def best_of(*runs: dict[str, Any]) -> dict[str, Any]:
    """The better of several runs for every figure: the lowest latencies, the highest throughputs
    (the runs kept under ``processes``)."""
    lowest = ("idle_median_s", "idle_p90_s", "hot_median_s")
    out: dict[str, Any] = {k: min(r[k] for r in runs) for k in lowest}
    out["batch1_per_s"] = max(r["batch1_per_s"] for r in runs)
    out["batched_per_s"] = {b: max(r["batched_per_s"][b] for r in runs) for b in runs[0]["batched_per_s"]}
    out["cpu_s_per_image"] = {b: min(r["cpu_s_per_image"][b] for r in runs)
                              for b in runs[0]["cpu_s_per_image"]}
    best = max(out["batched_per_s"], key=lambda k: out["batched_per_s"][k])
    out.update(best_batch=int(best), best_per_s=out["batched_per_s"][best], threads=runs[0]["threads"],
               gap_s=runs[0]["gap_s"], processes=list(runs))
    return out


def fair_reference(model: str, threads: int = 2, runs: int = 30, gap_s: float = 0.05, seed: int = 0,
                   batches: Sequence[int] = BATCHES) -> dict[str, Any]:
    """``best_of`` two fresh processes, OpenMP's default wait policy and PASSIVE (module docstring)."""
    return best_of(*(in_fresh_process(model, threads, runs, gap_s, seed, batches, omp_wait_policy=policy)
                     for policy in (None, "PASSIVE")))


def combine(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One torch reference from the runs before and after the stack: the mean of each figure (the two
    runs kept as they were, so a drift of the machine shows)."""
    keys = ("idle_median_s", "idle_p90_s", "hot_median_s", "batch1_per_s", "best_per_s")
    out: dict[str, Any] = {k: (before[k] + after[k]) / 2 for k in keys}
    rates = {b: (before["batched_per_s"][b] + after["batched_per_s"][b]) / 2 for b in before["batched_per_s"]}
    out["cpu_s_per_image"] = {b: (before["cpu_s_per_image"][b] + after["cpu_s_per_image"][b]) / 2
                              for b in before["cpu_s_per_image"]}
    best = max(rates, key=lambda k: rates[k])
    out.update(batched_per_s=rates, best_batch=int(best), best_per_s=rates[best], threads=before["threads"],
               gap_s=before["gap_s"], before=before, after=after)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="alexnet-paper")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--gap-s", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", default=",".join(str(b) for b in BATCHES))
    a = parser.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",") if b]
    print(json.dumps(measure(a.model, a.threads, a.runs, a.gap_s, a.seed, batches)))


if __name__ == "__main__":
    main()
