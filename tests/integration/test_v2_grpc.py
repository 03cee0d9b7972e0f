"""The Open Inference Protocol over gRPC (``grpc_port``) with the official clients, tritonclient.grpc
and the KServe SDK's ``InferenceGRPCClient``, against a real stack with an API token: health,
versioned metadata and readiness, inference with a request id, priority 0 and a timeout in
microseconds; the logits equal local torch and the REST answer; bad calls get the right status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from tooling.proc import REPO, free_port
from tooling.stack import CloudGroup, ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODEL = "digits-cnn"
API_TOKEN = "v2-grpc-api-token-0123456789abcdef"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=(MODEL,), log_dir=tmp_path_factory.mktemp("v2-grpc"),
            executor=ExecutorGroup(count=1, threads=1), cloud=CloudGroup(threads=1),
            orchestrator=OrchestratorGroup(extra={"api_token": API_TOKEN, "grpc_port": free_port()}))) as st:
        yield st


def _client(stack: LocalStack, which: str, x: np.ndarray, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "x.npy"
    np.save(path, x)
    port = stack.extra_orch["grpc_port"]
    proc = subprocess.run([sys.executable, "-m", "tests.integration.grpc_clients", which,
                           f"127.0.0.1:{port}", API_TOKEN, str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _reference(x: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return load_model(get_spec(MODEL), seed=0)(torch.from_numpy(x))


def _rest_logits(stack: LocalStack, x: np.ndarray) -> np.ndarray:
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}
    body = {"inputs": [tensor], "outputs": [{"name": "logits"}]}
    r = httpx.post(f"{stack.url}/v2/models/{MODEL}/infer", json=body, timeout=60,
                   headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert r.status_code == 200, r.text
    return np.array(r.json()["outputs"][0]["data"], np.float32).reshape(len(x), -1)


@pytest.mark.parametrize(("which", "images"), [("triton", 3), ("kserve", 1)])
def test_official_grpc_clients(stack: LocalStack, which: str, images: int, tmp_path: Path) -> None:
    """Each client over gRPC; tritonclient sends 3 images in one request (a row of logits each)."""
    x = np.random.default_rng(5).standard_normal((images, *get_spec(MODEL).input)).astype(np.float32)
    got = _client(stack, which, x, tmp_path)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["id"] == f"{which}-grpc"
    ref = _reference(x)
    logits = torch.tensor(got["logits"], dtype=torch.float32)
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)
    probs = torch.tensor(got["probabilities"])
    torch.testing.assert_close(probs, torch.softmax(ref, 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(logits.numpy(), _rest_logits(stack, x))
    if which == "triton":
        assert got["server"]["name"] == "edgesplit" and "binary_tensor_data" in got["server"]["extensions"]
        meta = got["metadata"]
        assert meta["versions"] == ["1"] and meta["inputs"][0]["shape"] == ["-1", "1", "8", "8"]  # int64
        assert got["errors"] == {"no_token": "StatusCode.UNAUTHENTICATED",
                                 "version_2": "StatusCode.NOT_FOUND",
                                 "priority_11": "StatusCode.INVALID_ARGUMENT"}
