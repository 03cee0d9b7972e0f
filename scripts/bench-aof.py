#!/usr/bin/env python3
"""What ``appendfsync always`` costs against ``everysec``: edgesplit's own submit script, timed.

For each policy, a private redis-server (its own port, its AOF in a temporary folder on the disk this
machine's state would use) takes ``--tasks`` submits of an ``alexnet-paper``-sized input (3x32x32
float32, 12 KB) through ``TaskQueue.submit``, first one at a time (the latency a client waits for)
and then from ``--clients`` concurrent submitters (throughput). Prints one JSON object.

    .venv/bin/python scripts/bench-aof.py --tasks 2000 --clients 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import redis.asyncio as aioredis

from edgesplit import wire
from services.orchestrator.queue import TaskQueue
from tooling.proc import free_port
from tooling.stack import redis_answers, redis_args

BODY = wire.encode(np.zeros((1, 3, 32, 32), np.float32))


async def _run(url: str, tasks: int, clients: int) -> dict[str, float]:
    client = aioredis.Redis.from_url(url, max_connections=clients + 1)
    q = TaskQueue(client, prefix="bench:", result_ttl_s=60)
    lat = []
    for _ in range(tasks):
        t0 = time.perf_counter()
        await q.submit("alexnet-paper", BODY, 3, 60, max_queue=10**9)
        lat.append(time.perf_counter() - t0)

    async def worker(n: int) -> None:
        for _ in range(n):
            await q.submit("alexnet-paper", BODY, 3, 60, max_queue=10**9)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(tasks // clients) for _ in range(clients)))
    wall = time.perf_counter() - t0
    await client.aclose()
    lat.sort()
    return {"median_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[int(0.99 * len(lat))],
            "throughput_per_s": clients * (tasks // clients) / wall}


def bench(fsync: str, tasks: int, clients: int, where: Path) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(dir=where) as state:
        proc = subprocess.Popen(redis_args(port, Path(state), fsync, "1gb"), stdout=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            while not redis_answers(url):
                time.sleep(0.05)
            return asyncio.run(_run(url, tasks, clients))
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the AOF goes")
    args = ap.parse_args()
    out = {p: bench(p, args.tasks, args.clients, args.dir) for p in ("everysec", "always")}
    print(json.dumps({"tasks": args.tasks, "clients": args.clients, "dir": str(args.dir), **out}))


if __name__ == "__main__":
    main()
