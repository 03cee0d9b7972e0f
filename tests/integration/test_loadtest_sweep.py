"""The load-test tooling against the real local stack (redis-server, cloud, 2 executors, orchestrator).

A smoke test of the tooling, not a timing test: a quick sweep (one mode, two densities, short steps,
``digits-cnn``) writes a CSV with a row for every density and priority and no failure; the KServe V2
customer answers right; a wrong expected class is counted as a failure; the stepped ``LoadTestShape``
runs its densities in order. Locust always runs in its own process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.samples import write_samples
from loadtest.sweep import LOCUSTFILE, SweepConfig, read_failures, run_step, run_sweep
from tooling.stack import ExecutorGroup, LocalStack, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODEL = "digits-cnn"
MIX = "1:1,3:1,5:1"  # balanced, so that every priority surely appears in a few-second step


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_samples(MODEL, tmp_path_factory.mktemp("samples"), count=4, seed=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs = tmp_path_factory.mktemp("lt-stack")
    with LocalStack(StackSettings(
            models=(MODEL,), log_dir=logs, executor=ExecutorGroup(count=2, threads=2))) as st:
        yield st


def _cfg(out: Path, **kw: object) -> SweepConfig:
    return SweepConfig(**{"modes": ("split",), "users": (1, 2), "step_s": 3.0, "out": out, "model": MODEL,
                          "mix": MIX, "task_timeout_s": 30.0, "samples": 4, **kw})  # type: ignore[arg-type]


def test_quick_sweep_writes_every_density_and_priority_without_failures(tmp_path: Path) -> None:
    summary = run_sweep(_cfg(tmp_path, orchestrator_extra={"max_batch": 4}))  # with dynamic batching
    with (tmp_path / "sweep.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    got = {(r["mode"], int(r["users"]), int(r["priority"])) for r in rows}
    assert got == {("split", u, p) for u in (1, 2) for p in (1, 3, 5)}
    assert all(int(r["requests"]) > 0 and int(r["failures"]) == 0 for r in rows), rows
    assert all(float(r["p50_ms"]) <= float(r["p95_ms"]) <= float(r["p99_ms"]) for r in rows)
    assert summary["failures"] == 0 and summary["urgent_priority"] == 1
    assert summary["orchestrator"] == {"max_batch": 4}
    assert summary["modes"]["split"]["urgent_p95_ratio"] > 0
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_v2_customer_gets_right_answers(stack: LocalStack, samples: Path, tmp_path: Path) -> None:
    rows = run_step(_cfg(tmp_path, api="v2"), stack.url, 2, samples, tmp_path, "split")
    assert [r.priority for r in rows] == [1, 3, 5]
    assert all(r.requests > 0 and r.failures == 0 for r in rows), rows


def test_wrong_answer_is_a_failure(stack: LocalStack, samples: Path, tmp_path: Path) -> None:
    meta = json.loads(samples.read_text())
    for s in meta["samples"]:
        s["top1"] = (s["top1"] + 1) % 10
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(meta))
    rows = run_step(_cfg(tmp_path, step_s=2.0), stack.url, 1, wrong, tmp_path, "split")
    assert sum(r.requests for r in rows) > 0
    assert all(r.failures == r.requests for r in rows), rows
    errors = {f["error"] for f in read_failures(tmp_path / "u1_failures.csv")}
    assert any("wrong answer" in e for e in errors), errors


def test_stepped_shape_runs_its_densities_in_order(stack: LocalStack, samples: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ES_STEPS": "1,3", "ES_STEP_S": "2", "ES_SAMPLES": str(samples),
           "ES_PRIORITY_MIX": MIX}
    prefix = tmp_path / "shape"
    subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", stack.url,
                    "--csv", str(prefix), "--csv-full-history", "--only-summary", "--loglevel", "WARNING",
                    "--stop-timeout", "30", "TaskCustomer"], env=env, check=True, timeout=90,
                   capture_output=True)
    with open(f"{prefix}_stats_history.csv", newline="") as f:
        counts = [int(r["User Count"]) for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    seen = [c for i, c in enumerate(counts) if c > 0 and (i == 0 or c != counts[i - 1])]
    assert seen == [1, 3], counts
