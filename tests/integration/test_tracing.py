"""OpenTelemetry tracing through a real stack (``trace_exporter = console``: one JSON span per line in
each service's log): a V2 request carrying a W3C ``traceparent`` becomes one trace from the
orchestrator's request through a span per stage and per slice to each executor's slice request and
the cloud's request; with tracing off (the default) no service writes a span."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgesplit.models import get_spec
from tooling.stack import CloudGroup, ExecutorGroup, LocalStack, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODEL = "digits-cnn"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
ROLES = ("orchestrator", "executor", "cloud")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    names = [f"EDGESPLIT_{role.upper()}_TRACE_EXPORTER" for role in ROLES]
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update(dict.fromkeys(names, "console"))  # every process of the stack inherits them
    try:
        with LocalStack(StackSettings(
                models=(MODEL,), log_dir=tmp_path_factory.mktemp("trace-stack"),
                executor=ExecutorGroup(count=1, threads=1), cloud=CloudGroup(threads=1))) as st:
            yield st
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _spans(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith('{"name"'):
            out.append(json.loads(line))
    return out


def _trace(stack: LocalStack, want: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The spans of TRACE_ID by service log, once every name in ``want`` is there (or after 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        found = {name: [s for s in _spans(stack.log_dir / f"{name}.log")
                        if s["context"]["trace_id"] == f"0x{TRACE_ID}"]
                 for name in ("orchestrator", "executor-0", "cloud")}
        names = {s["name"] for spans in found.values() for s in spans}
        if want <= names or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_one_v2_request_is_one_trace_across_orchestrator_executors_and_cloud(stack: LocalStack) -> None:
    x = np.random.default_rng(0).standard_normal((1, *get_spec(MODEL).input)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    headers = {"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"}
    r = httpx.post(f"{stack.url}/v2/models/{MODEL}/infer", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    server, slices, cloud = ("POST /v2/models/{model}/infer", "POST /v1/slices/{model}",
                             "POST /v1/infer/{model}")
    found = _trace(stack, {server, "stage 0", "cloud", slices, cloud})
    orch = {s["name"]: s for s in found["orchestrator"]}
    ids = {s["context"]["span_id"]: s for spans in found.values() for s in spans}
    assert orch[server]["parent_id"] == f"0x{CLIENT_SPAN}"
    stages = [s for s in found["orchestrator"] if s["name"].startswith("stage ")]
    assert stages and all(s["parent_id"] == orch[server]["context"]["span_id"] for s in stages)
    assert orch["cloud"]["parent_id"] == orch[server]["context"]["span_id"]
    slice_spans = [s for s in found["orchestrator"] if s["name"].startswith("slice ")]
    assert slice_spans and all(ids[s["parent_id"]]["name"].startswith("stage ") for s in slice_spans)
    executor = [s for s in found["executor-0"] if s["name"] == slices]
    assert executor and all(ids[s["parent_id"]]["name"].startswith("slice ") for s in executor)
    (cloud_span,) = [s for s in found["cloud"] if s["name"] == cloud]
    assert ids[cloud_span["parent_id"]]["name"] == "cloud"
    assert orch["stage 0"]["attributes"]["edgesplit.task_id"] == r.json()["parameters"]["task_id"]
