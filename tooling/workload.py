"""Workloads against a running orchestrator: the demo's mixed priorities and the end-to-end benchmark.

``bench_e2e`` measures, in one run: the median end-to-end latency of one task on an idle stack (client
side: submit to result, sequential tasks) against the same model in one torch process with 2 threads
(this process), and the throughput at saturation (K tasks submitted at once, K / (last finish - first
submit)) against that torch process's throughput (back-to-back single-image forwards).

The torch process's latency is measured twice. *Interleaved*: one forward right after each stack task,
on the same input, so each of the two finds an idle machine (caches and cores as a task arriving at
an idle server finds them) and a change in the machine's speed during the run hits both alike.
*Hot loop*: back-to-back forwards before the stack starts, the torch process at its warmest (a
forward after 20-40 ms idle took 10-50% longer than back to back on the development machine).
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from edgesplit import wire
from edgesplit.models.build import load_model
from edgesplit.models.spec import ModelSpec
from services.orchestrator.client import OrchestratorClient


def random_input(spec: ModelSpec, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, *spec.input)).astype(np.float32)


def torch_baseline(spec: ModelSpec, threads: int = 2, runs: int = 30, seed: int = 0) -> dict[str, float]:
    """Median latency (s) and throughput (images/s) of the whole model in this process."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        module = load_model(spec, seed=seed)
        x = torch.from_numpy(random_input(spec, seed))
        times = []
        with torch.no_grad():
            for _ in range(3):
                module(x)
            for _ in range(runs):
                t0 = time.perf_counter()
                module(x)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "median_s": statistics.median(times), "throughput_per_s": runs / sum(times)}


class TorchSide:
    """The whole model in this process with ``threads`` torch threads, one timed forward at a time."""

    def __init__(self, spec: ModelSpec, threads: int = 2, seed: int = 0) -> None:
        self.threads = threads
        self.module = load_model(spec, seed=seed)

    def forward_s(self, x: np.ndarray) -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                t0 = time.perf_counter()
                self.module(torch.from_numpy(x))
                return time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)


def idle_latency(oc: OrchestratorClient, spec: ModelSpec, runs: int = 30, warmup: int = 3,
                 torch_side: TorchSide | None = None) -> dict[str, Any]:
    """One task at a time: median client-side and server-side end-to-end latency, seconds. Each task
    is one request, ``POST /v1/tasks?wait=60`` (submit and wait for the result). With ``torch_side``,
    one torch forward of the same input follows each task (``torch_median_s``; module docstring)."""
    client, server, local, parts = [], [], [], []
    for i in range(warmup + runs):
        x = random_input(spec, i)
        body = wire.encode(x)
        sent, t0 = time.time(), time.perf_counter()
        info = oc.run(body, spec.name, priority=1, wait_s=60, logits=False)
        elapsed = time.perf_counter() - t0
        if info["status"] != "done":
            raise RuntimeError(f"task {info['id']} {info['status']}: {info.get('error')}")
        alone = torch_side.forward_s(x) if torch_side is not None else 0.0
        if i >= warmup:
            client.append(elapsed)
            server.append(float(info["e2e_s"]))
            local.append(alone)
            parts.append(task_parts(info, sent, sent + elapsed))
    out: dict[str, Any] = {"runs": runs, "median_s": statistics.median(client),
                           "server_median_s": statistics.median(server),
                           "p90_s": float(np.percentile(client, 90)),
                           "parts_ms": {k: 1e3 * statistics.median(p[k] for p in parts) for k in parts[0]}}
    if torch_side is not None:
        out["torch_median_s"] = statistics.median(local)
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


def saturation(oc: OrchestratorClient, spec: ModelSpec, tasks: int = 60) -> dict[str, float]:
    """``tasks`` submitted at once; throughput from the first submit to the last finish (server clocks)."""
    ids = [oc.submit(wire.encode(random_input(spec, 1000 + i)), spec.name, priority=3) for i in range(tasks)]
    infos = [oc.result(i, wait_s=300, logits=False) for i in ids]
    bad = [i for i in infos if i["status"] != "done"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {tasks} tasks did not finish: {bad[0].get('error')}")
    span = max(i["finished"] for i in infos) - min(i["submitted"] for i in infos)
    return {"tasks": tasks, "seconds": span, "throughput_per_s": tasks / span,
            "median_e2e_s": statistics.median(i["e2e_s"] for i in infos)}


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
