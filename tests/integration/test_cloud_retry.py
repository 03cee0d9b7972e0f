"""The orchestrator's cloud calls (``Engine.run_cloud``) against a real cloud process: an unreachable
cloud is tried ``cloud_retries`` more times, then the task fails with reason ``cloud``; a cloud that
refuses the features fails it at once; an answering one gives the unsplit model's logits."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from services.cloud.client import CloudClient
from services.common.http import HttpPool, new_http_client
from services.orchestrator.engine import Engine, Job, TaskFailed
from services.orchestrator.metrics import Metrics
from services.orchestrator.queue import Claimed
from services.orchestrator.routes import Route
from tooling.proc import ServiceProcess, free_port

pytestmark = [pytest.mark.services, pytest.mark.anyio]
MODEL = "digits-cnn"


def _job(x: torch.Tensor) -> Job:
    spec = get_spec(MODEL)
    task = Claimed(id="t-cloud", model=MODEL, priority=1, submitted=time.time(), deadline=time.time() + 30,
                   attempts=1, input=b"", token="tok")
    return Job(task=task, x=x, route=Route(steps=(), cloud_from=spec.n_edge), claimed_at=time.time())


def _engine(url: str, token: str | None, metrics: Metrics) -> tuple[Engine, HttpPool]:
    http = new_http_client(10.0)
    spec = get_spec(MODEL)
    cloud = CloudClient(url, token, timeout_s=10.0, http=http)
    engine = Engine(spec, load_model(spec, seed=0)[: spec.n_edge], None, cloud, None,  # type: ignore[arg-type]
                    metrics, max_retries=0, cloud_retries=2)
    return engine, http


def _failures(metrics: Metrics) -> float:
    return metrics.failures.labels(MODEL, "cloud")._value.get()


async def test_an_unreachable_cloud_is_tried_three_times_then_the_task_fails() -> None:
    metrics = Metrics()
    engine, http = _engine(f"http://127.0.0.1:{free_port()}", None, metrics)
    with torch.no_grad():
        features = engine.module(torch.zeros(1, *get_spec(MODEL).input))
    try:
        with pytest.raises(TaskFailed) as failed:
            await engine.run_cloud(_job(features))
        assert failed.value.reason == "cloud" and "does not answer" in str(failed.value)
        assert _failures(metrics) == 3
    finally:
        await http.aclose()


async def test_a_refusal_is_final_and_an_answer_is_exact(cloud: ServiceProcess, token: str) -> None:
    metrics = Metrics()
    engine, http = _engine(cloud.url, token, metrics)
    spec = get_spec(MODEL)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, *spec.input)).astype(np.float32))
    try:
        with pytest.raises(TaskFailed, match="refused"):
            await engine.run_cloud(_job(torch.zeros(1, 3, 2, 2)))
        assert _failures(metrics) == 0
        with torch.no_grad():
            features, ref = engine.module(x), load_model(spec, seed=0)(x)
        logits = await engine.run_cloud(_job(features))
        torch.testing.assert_close(torch.from_numpy(logits), ref, rtol=1e-4, atol=1e-4)
    finally:
        await http.aclose()
