"""The locustfile against an orchestrator that requires a public API token (``ES_API_TOKEN``).

With the token in ``ES_API_TOKEN`` (as the chart's locust Job passes it) every task succeeds; without it
every request is refused (401) and counted as a failure.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.samples import write_samples
from loadtest.sweep import LOCUSTFILE
from tooling.stack import CloudGroup, ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODEL = "digits-cnn"
API_TOKEN = "loadtest-api-token-0123456789abcdef"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs = tmp_path_factory.mktemp("lt-token")
    with LocalStack(StackSettings(
            models=(MODEL,), log_dir=logs, executor=ExecutorGroup(count=1, threads=1),
            cloud=CloudGroup(threads=1),
            orchestrator=OrchestratorGroup(extra={"api_token": API_TOKEN}))) as st:
        yield st


def _locust(stack: LocalStack, tmp_path: Path, token: str | None) -> dict[str, int]:
    samples = write_samples(MODEL, tmp_path / "samples", count=2, seed=0)
    env = {k: v for k, v in os.environ.items() if k != "ES_API_TOKEN"}
    env.update(ES_SAMPLES=str(samples), ES_PRIORITY_MIX="1:1")
    if token is not None:
        env["ES_API_TOKEN"] = token
    prefix = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", stack.url,
                    "-u", "1", "-r", "1", "-t", "2s", "--csv", str(prefix), "--only-summary", "--loglevel",
                    "WARNING", "--exit-code-on-error", "0", "--stop-timeout", "20", "TaskCustomer"],
                   env=env, check=True, timeout=90, capture_output=True)
    with open(f"{prefix}_stats.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "task p1")
    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"])}


def test_the_token_from_es_api_token_is_sent_as_a_bearer_token(stack: LocalStack, tmp_path: Path) -> None:
    got = _locust(stack, tmp_path, API_TOKEN)
    assert got["requests"] > 0 and got["failures"] == 0, got


def test_without_the_token_every_task_is_refused(stack: LocalStack, tmp_path: Path) -> None:
    got = _locust(stack, tmp_path, None)
    assert got["requests"] > 0 and got["failures"] == got["requests"], got
