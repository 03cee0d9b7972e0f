"""The public API through a real local stack (redis-server, cloud, 2 executors, orchestrator processes).

Results equal unsplit local inference; bad requests get the right 4xx and a message while the others
are unaffected; a full queue answers 429 with Retry-After; queued tasks time out on the timer.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from services.orchestrator.images import to_input
from tooling.proc import ServiceProcess, start_module
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODELS = ("alexnet-paper", "digits-cnn")
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=MODELS, log_dir=tmp_path_factory.mktemp("api-stack"),
            executor=ExecutorGroup(count=2, threads=2),
            orchestrator=OrchestratorGroup(extra={"max_body_bytes": MAX_BODY}))) as st:
        yield st


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        yield c


def _reference(model: str, x: np.ndarray) -> torch.Tensor:
    spec = get_spec(model)
    with torch.no_grad():
        return load_model(spec, seed=0)(torch.from_numpy(x))


def _png(seed: int, size: tuple[int, int] = (40, 50)) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _run(client: httpx.Client, body: bytes, **params: object) -> dict:
    r = client.post("/v1/tasks", params=params, content=body)
    assert r.status_code == 202, r.text
    info = client.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()
    assert info["status"] == "done", info
    return info


@pytest.mark.parametrize("model", MODELS)
def test_npy_result_equals_unsplit_local_inference(client: httpx.Client, model: str) -> None:
    x = np.random.default_rng(1).standard_normal((1, *get_spec(model).input)).astype(np.float32)
    info = _run(client, wire.encode(x), model=model, priority=3)
    ref = _reference(model, x)
    torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)
    assert [t["class"] for t in info["top_k"]] == torch.topk(ref[0], 5).indices.tolist()
    stages = info["timings"]["stages"]
    assert stages and all(s["end"] >= s["start"] for s in stages)
    assert info["route"]["steps"][0]["layers"][0] == 0


def test_submit_with_wait_answers_the_result_in_one_request(client: httpx.Client) -> None:
    """``POST /v1/tasks?wait=``: 200 with the finished task (what ``GET ?wait=`` gives); 202 with the
    id when the wait ends first."""
    x = np.random.default_rng(7).standard_normal((1, *get_spec("digits-cnn").input)).astype(np.float32)
    r = client.post("/v1/tasks", params={"model": "digits-cnn", "priority": 1, "wait": 30, "top_k": 3},
                    content=wire.encode(x))
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["status"] == "done" and r.headers["location"] == f"/v1/tasks/{info['id']}"
    ref = _reference("digits-cnn", x)
    torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)
    assert [t["class"] for t in info["top_k"]] == torch.topk(ref[0], 3).indices.tolist()
    assert client.get(f"/v1/tasks/{info['id']}").json()["top_k"][:3] == info["top_k"]
    # a wait shorter than the task: the usual 202, and the task still finishes
    r = client.post("/v1/tasks", params={"model": "alexnet-paper", "wait": 0.001}, content=_png(8))
    assert r.status_code in (200, 202), r.text
    if r.status_code == 202:
        assert r.json()["status"] == "queued"
        assert client.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()["status"] == "done"
    bad = client.post("/v1/tasks", params={"model": "digits-cnn", "wait": -1}, content=wire.encode(x))
    assert bad.status_code == 422 and "wait" in bad.text


def test_png_multipart_is_resized_normalised_and_classified(client: httpx.Client) -> None:
    body = _png(2)
    r = client.post("/v1/tasks", files={"image": ("x.png", body, "image/png")},
                    data={"model": "alexnet-paper", "priority": "2"})
    assert r.status_code == 202, r.text
    info = client.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()
    ref = _reference("alexnet-paper", to_input(body, get_spec("alexnet-paper")))
    torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)


def test_kserve_v2_infer_is_synchronous_and_exact(client: httpx.Client) -> None:
    x = np.random.default_rng(3).standard_normal((1, 1, 8, 8)).astype(np.float32)
    payload = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                           "data": x.ravel().tolist()}],
               "parameters": {"priority": 1, "timeout": 20_000_000}}  # microseconds, as Triton's
    r = client.post("/v2/models/digits-cnn/infer", json=payload)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    ref = _reference("digits-cnn", x)
    torch.testing.assert_close(torch.tensor(out["data"]).view(1, 10), ref, rtol=1e-4, atol=1e-4)
    meta = client.get("/v2/models/digits-cnn").json()
    assert meta["inputs"][0]["shape"] == [-1, 1, 8, 8] and meta["outputs"][0]["shape"] == [-1, 10]
    assert meta["parameters"]["max_batch_size"] == 64
    assert client.get("/v2/models/digits-cnn/ready").status_code == 200


def test_idempotent_submit_returns_the_same_task(client: httpx.Client) -> None:
    body = wire.encode(np.zeros((1, 8, 8), np.float32))
    headers = {"Idempotency-Key": f"k-{time.time_ns()}"}
    a = client.post("/v1/tasks", params={"model": "digits-cnn"}, content=body, headers=headers)
    b = client.post("/v1/tasks", params={"model": "digits-cnn"}, content=body, headers=headers)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"] and b.json()["duplicate"] is True
    c = client.post("/v1/tasks", params={"model": "digits-cnn", "priority": 1}, content=body, headers=headers)
    assert c.status_code == 409 and "Idempotency-Key" in c.json()["error"]


BAD = [
    ("not an image", {"model": "alexnet-paper"}, b"hello world, not an image", 415, "PNG, JPEG or NPY"),
    ("wrong-size npy", {"model": "alexnet-paper"}, wire.encode(np.zeros((3, 31, 32), np.float32)), 422,
     "expects [3, 32, 32]"),
    ("unknown model", {"model": "resnet-9000"}, wire.encode(np.zeros((3, 32, 32), np.float32)), 404,
     "not deployed"),
    ("priority 0", {"model": "digits-cnn", "priority": 0}, wire.encode(np.zeros((1, 8, 8), np.float32)),
     422, "priority 0 is out of range"),
    ("priority above max", {"model": "digits-cnn", "priority": 11},
     wire.encode(np.zeros((1, 8, 8), np.float32)), 422, "1 (most urgent) to 10"),
    ("negative timeout", {"model": "digits-cnn", "timeout": -1}, wire.encode(np.zeros((1, 8, 8), np.float32)),
     422, "timeout -1.0 s is out of range"),
    ("non-numeric priority", {"model": "digits-cnn", "priority": "high"},
     wire.encode(np.zeros((1, 8, 8), np.float32)), 422, "must be an integer in ASCII digits"),
    ("oversized upload", {"model": "alexnet-paper"}, b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY), 413,
     "above the limit"),
    ("empty body", {"model": "digits-cnn"}, b"", 422, "empty body"),
]


@pytest.mark.parametrize(("what", "params", "body", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_request_gets_its_status_and_a_message(client: httpx.Client, what: str, params: dict,
                                                   body: bytes, status: int, message: str) -> None:
    good = np.random.default_rng(4).standard_normal((1, 1, 8, 8)).astype(np.float32)
    ok = client.post("/v1/tasks", params={"model": "digits-cnn"}, content=wire.encode(good))
    r = client.post("/v1/tasks", params=params, content=body)
    assert r.status_code == status, (what, r.text)
    assert message in r.json()["error"], (what, r.json())
    info = client.get(f"/v1/tasks/{ok.json()['id']}", params={"wait": 30}).json()  # others unaffected
    assert info["status"] == "done"
    torch.testing.assert_close(torch.tensor(info["logits"]).view(1, 10), _reference("digits-cnn", good),
                               rtol=1e-4, atol=1e-4)


def test_unknown_task_is_404_and_health_metrics_openapi_answer(client: httpx.Client) -> None:
    r = client.get("/v1/tasks/does-not-exist")
    assert r.status_code == 404 and "does-not-exist" in r.json()["error"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    text = client.get("/metrics").text
    for name in ("edgesplit_orchestrator_pending_tasks", "edgesplit_orchestrator_e2e_seconds_bucket",
                 "edgesplit_orchestrator_stage_seconds_bucket", "edgesplit_orchestrator_queue_seconds_bucket",
                 "edgesplit_orchestrator_failures_total"):
        assert name in text, name
    assert client.get("/openapi.json").status_code == 404  # off unless the docs setting is on


@pytest.fixture(scope="module")
def api_only(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """An orchestrator replica without pipelines (tasks stay queued), max 3 queued per model."""
    svc = start_module("orchestrator-api-only", "services.orchestrator", "EDGESPLIT_ORCHESTRATOR_",
                       {"workers": "false", "models": "digits-cnn", "prefix": f"{stack.prefix}api-only:",
                        "max_queue": 3, "reap_interval_s": 0.1}, tmp_path_factory.mktemp("api-only"))
    yield svc
    svc.stop()


def test_full_queue_answers_429_then_queued_tasks_expire_on_the_timer(api_only: ServiceProcess) -> None:
    body = wire.encode(np.zeros((1, 8, 8), np.float32))
    with httpx.Client(base_url=api_only.url, timeout=10) as c:
        ids = [c.post("/v1/tasks", params={"model": "digits-cnn", "timeout": 2}, content=body).json()["id"]
               for _ in range(3)]
        r = c.post("/v1/tasks", params={"model": "digits-cnn"}, content=body)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "full" in r.json()["error"]
        assert all(c.get(f"/v1/tasks/{i}").json()["status"] == "queued" for i in ids)
        metrics = c.get("/metrics").text
        assert 'edgesplit_orchestrator_pending_tasks{model="digits-cnn",priority="5"} 3.0' in metrics
        # nobody runs them (no pipelines here): the timer expires them, which makes room again
        for i in ids:
            info = c.get(f"/v1/tasks/{i}", params={"wait": 10}).json()
            assert info["status"] == "expired" and "queued" in info["error"]
        again = c.post("/v1/tasks", params={"model": "digits-cnn", "timeout": 1}, content=body)
        assert again.status_code == 202


def test_a_v2_request_of_images_the_queue_cannot_hold_queues_none(api_only: ServiceProcess) -> None:
    """5 images against a queue of 3 places: 429, and the images queued before it filled are cancelled
    (a request is queued whole or not at all)."""
    x = np.zeros((5, 1, 8, 8), np.float32)
    payload = {"inputs": [{"name": "input", "shape": [5, 1, 8, 8], "datatype": "FP32",
                           "data": x.ravel().tolist()}], "parameters": {"timeout": 30_000_000}}
    with httpx.Client(base_url=api_only.url, timeout=10) as c:
        deadline = time.monotonic() + 10  # the previous test's last task expires after 1 s
        while c.get("/v1/models").json()["models"]["digits-cnn"]["queued"]:
            assert time.monotonic() < deadline, "the queue never emptied"
            time.sleep(0.1)
        r = c.post("/v2/models/digits-cnn/infer", json=payload)
        assert r.status_code == 429 and "full" in r.json()["error"], r.text
        assert c.get("/v1/models").json()["models"]["digits-cnn"]["queued"] == 0
