"""Workloads against a running orchestrator: the demo's mixed priorities and the end-to-end benchmark.

``bench_e2e`` measures the median end-to-end latency of one task on an idle stack (client side:
submit to result, sequential tasks ``gap_s`` apart) and the throughput at saturation (K tasks
submitted at once, K / (last finish - first submit)). The torch reference is not timed here: torch
timed in this process while the stack's processes ran read 122 ms against 35 ms for the same forward
(an earlier, interleaved method), so ``tooling.e2e_torch`` times it in a fresh process with the stack
stopped, with the same ``gap_s`` between forwards, before and after the stack.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from edgesplit import wire
from edgesplit.models.spec import ModelSpec
from services.orchestrator.client import OrchestratorClient


def random_input(spec: ModelSpec, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, *spec.input)).astype(np.float32)


def idle_latency(oc: OrchestratorClient, spec: ModelSpec, runs: int = 30, warmup: int = 3,
                 gap_s: float = 0.0) -> dict[str, Any]:
    """One task at a time, each ``gap_s`` after the previous one's result: median client-side and
    server-side end-to-end latency, seconds. Each task is one request, ``POST /v1/tasks?wait=60``
    (submit and wait for the result)."""
    client, server, parts = [], [], []
    for i in range(warmup + runs):
        x = random_input(spec, i)
        body = wire.encode(x)
        time.sleep(gap_s)
        sent, t0 = time.time(), time.perf_counter()
        info = oc.run(body, spec.name, priority=1, wait_s=60, logits=False)
        elapsed = time.perf_counter() - t0
        if info["status"] != "done":
            raise RuntimeError(f"task {info['id']} {info['status']}: {info.get('error')}")
        if i >= warmup:
            client.append(elapsed)
            server.append(float(info["e2e_s"]))
            parts.append(task_parts(info, sent, sent + elapsed))
    out: dict[str, Any] = {"runs": runs, "gap_s": gap_s, "median_s": statistics.median(client),
                           "server_median_s": statistics.median(server),
                           "p90_s": float(np.percentile(client, 90)),
                           "parts_ms": {k: 1e3 * statistics.median(p[k] for p in parts) for k in parts[0]}}
    return out


def task_parts(info: dict[str, Any], sent: float, received: float) -> dict[str, float]:
    """Where one task's time went, seconds, from the timings the orchestrator records (Unix clocks of
    the same machine): the client's request until the task was queued, the queue (until claimed),
    edge compute (each stage's slowest slice), edge transfer and request overhead (the rest of each
    stage's slowest slice), the cloud call, from the result being written until the client had it,
    and the rest (slicing, merges, the steps between; the parts add up to the client's time)."""
    t = info["timings"]
    compute = transfer = 0.0
    for stage in t["stages"]:
        slowest = max(stage["slices"], key=lambda s: s["end"] - s["start"])
        compute += slowest["compute_s"]
        transfer += slowest["end"] - slowest["start"] - slowest["compute_s"]
    cloud = t["cloud"]["end"] - t["cloud"]["start"] if t.get("cloud") else 0.0
    out = {"submit": info["submitted"] - sent, "queue": t["claimed"] - info["submitted"],
           "edge_compute": compute, "edge_transfer": transfer, "cloud": cloud,
           "result": received - info["finished"]}
    out["other"] = received - sent - sum(out.values())
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far, seconds (Linux ``/proc/<pid>/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def saturation(oc: OrchestratorClient, spec: ModelSpec, tasks: int = 60,
               pids: dict[str, int] | None = None, warmup: int = 0) -> dict[str, Any]:
    """``tasks`` submitted at once (priority 3, after ``warmup`` of them one by one); throughput from
    the first submit to the last finish (server clocks). With ``pids`` (the stack's processes), the
    CPU seconds each spent per task meanwhile: a figure the other load on a shared machine does not
    change as much as the wall-clock throughput."""
    for i in range(warmup):
        oc.run(wire.encode(random_input(spec, 900 + i)), spec.name, priority=3, wait_s=60, logits=False)
    before = cpu_seconds(pids or {})
    ids = [oc.submit(wire.encode(random_input(spec, 1000 + i)), spec.name, priority=3) for i in range(tasks)]
    infos = [oc.result(i, wait_s=300, logits=False) for i in ids]
    after = cpu_seconds(pids or {})
    cpu = {k: (after[k] - before[k]) / tasks for k in before if k in after}
    bad = [i for i in infos if i["status"] != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {tasks} tasks did not finish: {bad[0].get('error')}")
    span = max(i["finished"] for i in infos) - min(i["submitted"] for i in infos)
    return {"tasks": tasks, "seconds": span, "throughput_per_s": tasks / span,
            "median_e2e_s": statistics.median(i["e2e_s"] for i in infos),
            "mean_batch": statistics.fmean((i.get("timings") or {}).get("batch", 1) for i in infos),
            "cpu_s_per_task": cpu, "cpu_s_per_task_total": sum(cpu.values())}


def mixed_priorities(oc: OrchestratorClient, spec: ModelSpec, tasks: int = 12,
                     priorities: tuple[int, ...] = (5, 3, 1)) -> dict[int, dict[str, float]]:
    """Submit ``tasks`` tasks at once, priorities cycling; latency statistics by priority (seconds)."""
    sent = [(priorities[i % len(priorities)], oc.submit(wire.encode(random_input(spec, i)), spec.name,
                                                        priority=priorities[i % len(priorities)]))
            for i in range(tasks)]
    infos = [(p, oc.result(tid, wait_s=120, logits=False)) for p, tid in sent]
    out: dict[int, dict[str, float]] = {}
    for p in sorted(set(priorities)):
        done = [i for q, i in infos if q == p and i["status"] == "done"]
        e2e = [i["e2e_s"] for i in done]
        out[p] = {"tasks": sum(q == p for q, _ in infos), "done": len(done),
                  "median_e2e_s": statistics.median(e2e) if e2e else float("nan"),
                  "max_e2e_s": max(e2e) if e2e else float("nan"),
                  "mean_queue_s": statistics.fmean(i["queue_s"] for i in done) if done else float("nan")}
    return out


def digit_sample(index: int = 0) -> tuple[bytes, int, np.ndarray]:
    """A PNG of one of scikit-learn's digits (8x8, ink bright), its label and the model input."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images[index] / 16.0 * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue(), int(digits.target[index]), (pixels.astype(np.float32) / 255.0)[None, None]


def classify_sample(oc: OrchestratorClient, spec: ModelSpec, module: torch.nn.Sequential,
                    index: int = 0) -> dict[str, Any]:
    """Send one digit image through the stack; its top-1 against the label and the local model."""
    png, label, x = digit_sample(index)
    info = oc.result(oc.submit(png, spec.name, priority=1), wait_s=60)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))
    got = torch.tensor(info["logits"]).view_as(ref)
    return {"label": label, "top1": info["top_k"][0]["class"], "prob": info["top_k"][0]["prob"],
            "status": info["status"], "max_abs_diff_vs_local": float((got - ref).abs().max()),
            "e2e_s": info["e2e_s"]}
