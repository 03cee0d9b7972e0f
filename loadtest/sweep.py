"""Customer-density sweep: for each serving mode, the local stack under 1, 2, 4, ... locust customers.

For each mode (``split``, ``no-split``, ``dads``) the sweep starts a ``LocalStack`` in that mode,
warms it up, then for each density runs ``locust --headless`` in its own process (``-u N -r N -t
step_s``, stats reset once all N customers run, users let finish their task at the end) and reads
locust's ``*_stats.csv``: per priority p50/p95/p99 latency of a whole task (submit to result),
throughput and failures. Between densities it waits until the stack is idle, so a step starts with
no task of the previous one. The stack is stopped before the next mode starts.

Outputs (``loadtest.report``): ``sweep.csv`` (one row per mode x density x priority), ``sweep.png``
(p95 latency by priority vs density, one line per mode) and ``summary.json`` (for the most urgent
priority, p95 at the highest density divided by p95 at the lowest, per mode).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from edgesplit.type_aliases import ServingModeName
from loadtest.mix import DEFAULT_MIX, parse_mix

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# the serving modes (plan.modes.SERVING_MODES; their Literal, so that the sweep does not import torch)
MODES: tuple[ServingModeName, ...] = get_args(ServingModeName)
Api = Literal["tasks", "v2"]
USER_CLASS = {"tasks": "TaskCustomer", "v2": "V2Customer"}
REQUEST_PREFIX = {"tasks": "task", "v2": "infer"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep. Times in seconds; ``executors`` x ``threads`` worker threads in the stack."""

    modes: tuple[ServingModeName, ...] = MODES
    users: tuple[int, ...] = (1, 2, 4, 8, 16)
    step_s: float = 20.0
    out: Path = Path("out/sweep")
    model: str = "alexnet-paper"
    api: Api = "tasks"
    mix: str = DEFAULT_MIX
    executors: int = 2
    threads: int = 2
    think_s: float = 0.0
    task_timeout_s: float = 60.0
    samples: int = 8
    seed: int = 0
    orchestrator_extra: dict[str, object] = field(default_factory=dict)  # the stack's orchestrator settings

    def priorities(self) -> list[int]:
        return list(parse_mix(self.mix))


class Row(NamedTuple):
    """One mode x density x priority: whole-task latencies (ms), throughput (tasks/s), failures."""

    mode: str
    users: int
    priority: int
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    load_avg_1m: float


def _number(value: str) -> float:
    return math.nan if value in ("", "N/A") else float(value)


def read_stats(path: Path, prefix: str, priorities: list[int], mode: str, users: int,
               load: float) -> list[Row]:
    """Rows from locust's ``*_stats.csv``: request ``{prefix} pN`` for each priority N (zeros if absent)."""
    with path.open(newline="") as f:
        by_name = {r["Name"]: r for r in csv.DictReader(f)}
    rows = []
    for p in priorities:
        r = by_name.get(f"{prefix} p{p}")
        if r is None:
            rows.append(Row(mode, users, p, 0, 0, math.nan, math.nan, math.nan, math.nan, 0.0, load))
            continue
        rows.append(Row(mode, users, p, int(r["Request Count"]), int(r["Failure Count"]), _number(r["50%"]),
                        _number(r["95%"]), _number(r["99%"]), _number(r["Average Response Time"]),
                        _number(r["Requests/s"]), load))
    return rows


def read_failures(path: Path) -> list[dict[str, str]]:
    """Locust's ``*_failures.csv`` (method, name, error, occurrences); empty when there is none."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{"name": r["Name"], "error": r["Error"], "occurrences": r["Occurrences"]}
                for r in csv.DictReader(f)]


def locust_command(cfg: SweepConfig, host: str, users: int, csv_prefix: Path, samples: Path) -> list[str]:
    """The headless locust run of one density (all users started at once, stats reset after that)."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", host,
            "-u", str(users), "-r", str(users), "-t", f"{cfg.step_s:g}s", "--reset-stats",
            "--stop-timeout", f"{cfg.task_timeout_s + 10:g}", "--csv", str(csv_prefix), "--only-summary",
            "--loglevel", "WARNING", "--exit-code-on-error", "0", "--samples", str(samples),
            "--priority-mix", cfg.mix, "--task-timeout", f"{cfg.task_timeout_s:g}",
            "--think-s", f"{cfg.think_s:g}", "--mix-seed", str(cfg.seed), USER_CLASS[cfg.api]]


def run_step(cfg: SweepConfig, host: str, users: int, samples: Path, workdir: Path, mode: str) -> list[Row]:
    """One density: locust in its own process, then its CSV as rows."""
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = workdir / f"u{users}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ES_")}  # no stepped shape here
    log = workdir / f"u{users}.log"
    with log.open("wb") as out:
        proc = subprocess.run(locust_command(cfg, host, users, prefix, samples), env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=cfg.step_s + 2 * cfg.task_timeout_s + 60)
    stats = prefix.with_name(prefix.name + "_stats.csv")
    if proc.returncode != 0 or not stats.is_file():
        raise RuntimeError(f"locust exited with {proc.returncode} at {users} users; see {log}")
    return read_stats(stats, REQUEST_PREFIX[cfg.api], cfg.priorities(), mode, users, os.getloadavg()[0])


class StackClient:
    """The sweep's own view of a running stack: warm-up and waiting until idle (httpx, one client)."""

    def __init__(self, url: str, model: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=url, timeout=120.0)
        self.model = model

    def close(self) -> None:
        self.client.close()

    def warm_up(self, images: list[Path], rounds: int = 1) -> None:
        """Run every sample ``rounds`` times, one after the other, and check each ends ``done``."""
        for _ in range(rounds):
            for image in images:
                r = self.client.post("/v1/tasks", params={"model": self.model, "priority": 5},
                                     content=image.read_bytes(), headers={"Content-Type": "image/png"})
                r.raise_for_status()
                view = self.client.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 60, "logits": False})
                if view.json().get("status") != "done":
                    raise RuntimeError(f"warm-up task did not finish: {view.text[:300]}")

    def route(self) -> Any:
        """The route the orchestrator uses for the model (steps, strategies, executors), as it reports."""
        return self.client.get("/v1/models").json()["models"][self.model].get("route")

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Until no task of this model is queued or in flight (a step must not inherit the last one's)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            queued = self.client.get("/v1/models").json()["models"][self.model]["queued"]
            in_flight = self.client.get("/v1/status").json()["in_flight"].get(self.model, 0)
            if queued == 0 and in_flight == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the stack did not drain within {timeout_s} s")


def run_mode(cfg: SweepConfig, mode: str, samples: Path, images: list[Path], progress: Progress,
             rows: list[Row], routes: dict[str, Any]) -> None:
    """Start the stack in ``mode``, run every density (appending to ``rows`` as each ends), stop it.
    ``routes[mode]``: the route the orchestrator reported after the warm-up."""
    from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

    workdir = cfg.out / mode
    started = time.monotonic()
    settings = StackSettings(models=(cfg.model,), seed=cfg.seed, log_dir=workdir / "logs",
                             executor=ExecutorGroup(count=cfg.executors, threads=cfg.threads),
                             orchestrator=OrchestratorGroup(mode=mode, extra=cfg.orchestrator_extra))
    with LocalStack(settings) as stack:
        progress(f"{mode}: stack up at {stack.url} in {time.monotonic() - started:.1f} s")
        client = StackClient(stack.url, cfg.model)
        try:
            client.warm_up(images)
            routes[mode] = client.route()
            for users in cfg.users:
                client.wait_idle()
                step = run_step(cfg, stack.url, users, samples, workdir, mode)
                rows.extend(step)
                progress(f"{mode}: {users} users: " + ", ".join(
                    f"p{r.priority} p95 {r.p95_ms:g} ms ({r.requests} tasks, {r.failures} failed)"
                    for r in step))
        finally:
            client.close()


def run_sweep(cfg: SweepConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The whole sweep: samples, every mode, then the CSV, the PNG and the summary (returned)."""
    from loadtest.report import summarize, write_csv, write_plot
    from loadtest.samples import write_samples

    say = progress or (lambda _msg: None)
    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown mode {bad[0]!r}; expected one of {', '.join(MODES)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    samples = write_samples(cfg.model, cfg.out / "samples", cfg.samples, cfg.seed, None, cfg.seed)
    images = sorted((cfg.out / "samples").glob(f"{cfg.model}-*.png"))
    say(f"{len(images)} samples of {cfg.model} with expected classes in {samples}")
    rows: list[Row] = []
    errors: dict[str, str] = {}
    routes: dict[str, Any] = {}
    csv_path, png_path = cfg.out / "sweep.csv", cfg.out / "sweep.png"
    for mode in cfg.modes:
        try:
            run_mode(cfg, mode, samples, images, say, rows, routes)
        except Exception as e:  # any failure of one mode (stack, locust, HTTP) is reported; the others run
            errors[mode] = str(e)[-2000:]
            say(f"{mode}: FAILED: {errors[mode]}")
        write_csv(rows, csv_path)  # after every mode, so a later crash keeps what was measured
    write_plot(rows, png_path, cfg)
    summary = summarize(rows, cfg, csv_path, png_path, errors)
    for name, route in routes.items():
        summary["modes"][name]["route"] = route
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
