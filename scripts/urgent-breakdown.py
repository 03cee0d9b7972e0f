"""Where a priority-1 task's time goes on the local stack, idle and under load (docs/BENCHMARKS.md,
load sweep, run 8).

Starts the local stack (alexnet-paper, 2 executors x 2 threads, ``--max-batch``, the express lane on),
runs ``--customers`` closed-loop customers as threads of this process (``httpx``: no locust), each
drawing its task's priority from the sweep's mix (10% priority 1, 30% 3, 60% 5), and after a 3 s
warm-up records for ``--seconds`` every priority-1 task's parts from the timings the orchestrator
returns: client to claim, claim to its first step, the steps (slice compute and the slices' wait in
an executor's queue), the cloud call (and its wait for a slot at the orchestrator's cloud gate),
and the result's way back. Prints median and p95 of each::

    .venv/bin/python scripts/urgent-breakdown.py --customers 16 --seconds 30
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from typing import Any

import httpx
import numpy as np

from edgesplit import wire
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

MODEL = "alexnet-paper"
MIX = {1: 10, 3: 30, 5: 60}


def parts(sent: float, received: float, res: dict[str, Any]) -> dict[str, float]:
    """A done task's parts, ms."""
    t = res["timings"]
    stages = t["stages"]
    return {"e2e": received - sent, "to_claim": t["claimed"] - sent,
            "claim_to_step": stages[0]["start"] - t["claimed"],
            "steps": sum(s["end"] - s["start"] for s in stages),
            "slice_compute": sum(sl["compute_s"] for s in stages for sl in s["slices"]),
            "slice_wait": sum(sl["wait_s"] for s in stages for sl in s["slices"]),
            "cloud": t["cloud"]["end"] - t["cloud"]["start"],
            "cloud_gate_wait": t["cloud"].get("wait_s", 0.0),
            "after_cloud": received - t["cloud"]["end"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-batch", type=int, default=8)
    args = ap.parse_args()
    body = wire.encode(np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    stop, recording = threading.Event(), threading.Event()
    urgent: list[dict[str, float]] = []
    done = [0]
    lock = threading.Lock()

    def customer(url: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=60) as c:
            while not stop.is_set():
                prio = rng.choices(list(MIX), list(MIX.values()))[0]
                sent = time.time()
                r = c.post("/v1/tasks", params={"model": MODEL, "priority": prio}, content=body)
                r.raise_for_status()
                res = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 60}).json()
                received = time.time()
                if res["status"] != "done":
                    raise RuntimeError(f"task ended {res['status']}: {res.get('error')}")
                if recording.is_set() and not stop.is_set():
                    with lock:
                        done[0] += 1
                        if prio == 1:
                            urgent.append(parts(sent, received, res))

    settings = StackSettings(models=(MODEL,), executor=ExecutorGroup(count=2, threads=2),
                             orchestrator=OrchestratorGroup(extra={"max_batch": args.max_batch}))
    with LocalStack(settings) as st:
        threads = [threading.Thread(target=customer, args=(st.url, i)) for i in range(args.customers)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        recording.set()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
    print(f"{args.customers} customers, max_batch {args.max_batch}: {done[0] / args.seconds:.1f} tasks/s, "
          f"{len(urgent)} priority-1 tasks")
    for key in urgent[0] if urgent else []:
        v = sorted(1e3 * u[key] for u in urgent)
        p95 = v[round(0.95 * (len(v) - 1))]
        print(f"  {key:14s} median {statistics.median(v):6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()
