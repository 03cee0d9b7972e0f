"""Open Inference Protocol conformance with the official clients, against a real local stack
(redis-server, cloud, executor, orchestrator processes; an API token, as in production).

The clients are driven as their users drive them: ``tritonclient.http`` (binary tensors by default,
versioned routes, ``priority`` and ``timeout`` in microseconds, gzip request compression) and the
KServe SDK's ``InferenceRESTClient`` (protocol v2). Every result is compared with local torch; the
binary and JSON answers for the same input are equal. Raw httpx checks what the clients never send
(hostile JSON, wrong versions, out-of-range parameters): 400/404 with a message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch

from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from tooling.stack import CloudGroup, ExecutorGroup, LocalStack, OrchestratorGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services]
MODEL = "digits-cnn"
API_TOKEN = "v2-conformance-api-token-0123456789"
TIMEOUT_US = 20_000_000  # 20 s, in Triton's unit


def auth() -> dict[str, str]:
    """A fresh header dict per call: tritonclient writes its Inference-Header-Content-Length into the
    dict it is given, which would leak into the next request."""
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(
            models=(MODEL,), log_dir=tmp_path_factory.mktemp("v2-stack"),
            executor=ExecutorGroup(count=1, threads=1), cloud=CloudGroup(threads=1),
            orchestrator=OrchestratorGroup(extra={"api_token": API_TOKEN}))) as st:
        yield st


def _image(seed: int, rows: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, *get_spec(MODEL).input)).astype(np.float32)


def _reference(x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = load_model(get_spec(MODEL), seed=0)(torch.from_numpy(x))
    return logits.numpy()


def _check(logits: np.ndarray, probs: np.ndarray | None, x: np.ndarray) -> None:
    ref = _reference(x)
    torch.testing.assert_close(torch.from_numpy(np.array(logits)), torch.from_numpy(ref),
                               rtol=1e-4, atol=1e-4)
    if probs is not None:
        want = torch.softmax(torch.from_numpy(ref), 1)
        torch.testing.assert_close(torch.from_numpy(np.array(probs)), want, rtol=1e-4, atol=1e-5)


def test_tritonclient_http_health_metadata_versioned_readiness(stack: LocalStack) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(stack.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready(MODEL, headers=auth())
        assert client.is_model_ready(MODEL, "1", headers=auth())
        assert not client.is_model_ready(MODEL, "2", headers=auth())
        assert not client.is_model_ready("resnet-9000", headers=auth())
        server = client.get_server_metadata(headers=auth())
        assert server["name"] == "edgesplit" and "binary_tensor_data" in server["extensions"]
        meta = client.get_model_metadata(MODEL, "1", headers=auth())
        assert meta["versions"] == ["1"] and meta["inputs"][0]["shape"] == [-1, 1, 8, 8]
        assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities"]
        with pytest.raises(triton.InferenceServerException) as denied:
            client.get_model_metadata(MODEL)
        assert denied.value.status() == "401"
    finally:
        client.close()


def test_tritonclient_http_binary_and_json_infer_agree_with_torch(stack: LocalStack) -> None:
    import tritonclient.http as triton

    x = _image(1)
    client = triton.InferenceServerClient(stack.url.removeprefix("http://"), network_timeout=60)
    try:
        binary_in = triton.InferInput("input", list(x.shape), "FP32")
        binary_in.set_data_from_numpy(x, binary_data=True)
        # no outputs named: tritonclient asks for every output as binary (binary_data_output)
        binary = client.infer(MODEL, [binary_in], request_id="triton-binary", priority=0,
                              timeout=TIMEOUT_US, headers=auth())
        assert binary.get_response()["id"] == "triton-binary"
        assert all("binary_data_size" in o["parameters"] for o in binary.get_response()["outputs"])
        _check(binary.as_numpy("logits"), binary.as_numpy("probabilities"), x)

        json_in = triton.InferInput("input", list(x.shape), "FP32")
        json_in.set_data_from_numpy(x, binary_data=False)
        wanted = [triton.InferRequestedOutput("logits", binary_data=False)]
        plain = client.infer(MODEL, [json_in], model_version="1", outputs=wanted, request_id="triton-json",
                             priority=1, timeout=TIMEOUT_US, headers=auth())
        response = plain.get_response()
        assert response["id"] == "triton-json" and response["model_version"] == "1"
        assert [o["name"] for o in response["outputs"]] == ["logits"] and "data" in response["outputs"][0]
        np.testing.assert_array_equal(plain.as_numpy("logits"), binary.as_numpy("logits"))

        gz = client.infer(MODEL, [binary_in], headers=auth(), request_compression_algorithm="gzip",
                          outputs=[triton.InferRequestedOutput("probabilities", binary_data=True)])
        np.testing.assert_array_equal(gz.as_numpy("probabilities"), binary.as_numpy("probabilities"))

        wrong = triton.InferInput("input", [1, 1, 8, 7], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 1, 8, 7), np.float32))
        with pytest.raises(triton.InferenceServerException) as bad:
            client.infer(MODEL, [wrong], headers=auth())
        assert bad.value.status() == "400"
        assert "expected [N, 1, 8, 8] with N from 1 to 64" in bad.value.message()
    finally:
        client.close()


def test_kserve_sdk_rest_v2_binary_and_json_infer(stack: LocalStack) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    x = _image(2)

    async def run() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
        try:
            assert await client.is_server_live(stack.url)
            assert await client.is_server_ready(stack.url)
            assert await client.is_model_ready(stack.url, MODEL, headers=auth())
            assert not await client.is_model_ready(stack.url, "resnet-9000", headers=auth())
            params = {"priority": 0, "timeout": TIMEOUT_US}
            binary_in = InferInput("input", list(x.shape), "FP32")
            binary_in.set_data_from_numpy(x, binary_data=True)
            request = InferRequest(MODEL, [binary_in], request_id="kserve-binary", parameters=params,
                                   request_outputs=[RequestedOutput("logits", {"binary_data": True}),
                                                    RequestedOutput("probabilities", {"binary_data": True})])
            binary = await client.infer(stack.url, request, model_name=MODEL, headers=auth())
            assert binary.id == "kserve-binary"
            json_in = InferInput("input", list(x.shape), "FP32")
            json_in.set_data_from_numpy(x, binary_data=False)
            plain = await client.infer(stack.url, InferRequest(MODEL, [json_in], request_id="kserve-json",
                                                               parameters=params),
                                       model_name=MODEL, headers=auth())
            assert plain.id == "kserve-json"
            outs = {o.name: o.as_numpy() for o in binary.outputs}
            json_outs = {o.name: o.as_numpy() for o in plain.outputs}
            assert set(outs) == set(json_outs) == {"logits", "probabilities"}
            return outs["logits"], outs["probabilities"], json_outs["logits"]
        finally:
            await client.close()

    logits, probs, json_logits = asyncio.run(run())
    _check(logits, probs, x)
    np.testing.assert_array_equal(json_logits, logits)


def test_raw_http_binary_request_and_protocol_errors(stack: LocalStack) -> None:
    x = _image(3)
    url = f"/v2/models/{MODEL}/versions/1/infer"
    head = json.dumps({"id": "raw-1", "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                                  "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
                       "parameters": {"timeout": TIMEOUT_US}}).encode()
    with httpx.Client(base_url=stack.url, headers=auth(), timeout=60) as http:
        r = http.post(url, content=head + x.tobytes(),
                      headers={"Inference-Header-Content-Length": str(len(head))})
        assert r.status_code == 200, r.text
        n = int(r.headers["inference-header-content-length"])
        answer = json.loads(r.content[:n])
        assert answer["id"] == "raw-1" and answer["outputs"][0]["parameters"]["binary_data_size"] == 40
        _check(np.frombuffer(r.content[n:], "<f4").reshape(1, 10), None, x)

        def status(path: str, body: bytes, **headers: str) -> tuple[int, str]:
            resp = http.post(path, content=body, headers=headers)
            return resp.status_code, resp.json()["error"]

        nested = b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        assert status(url, nested)[0] == 400
        plain = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                             "data": x.ravel().tolist()}]}
        for params, words in [({"priority": 11}, "priority"), ({"priority": -1}, "priority"),
                              ({"timeout": 10**13}, "timeout"), ({"timeout": "soon"}, "timeout"),
                              ({"sequence_id": 7}, "sequence")]:
            code, error = status(url, json.dumps({**plain, "parameters": params}).encode())
            assert code == 400 and words in error, (params, error)
        code, error = status(url, json.dumps({**plain, "outputs": [{"name": "features"}]}).encode())
        assert code == 400 and "unknown output" in error
        assert status(f"/v2/models/{MODEL}/versions/7/infer", json.dumps(plain).encode())[0] == 404
        assert http.get(f"/v2/models/{MODEL}/versions/7").status_code == 404
        assert http.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
        # the standard HTTP metrics name the route template, not the URL
        metrics = http.get("/metrics").text
        assert ('http_request_duration_seconds_count{handler="/v2/models/{model}/versions/{version}/infer",'
                'method="POST",status="200"}') in metrics
        assert 'handler="/v2/models/{model}/versions/{version}/infer",method="POST",status="400"' in metrics
    # tracing is off by default: no service wrote a span
    for log in stack.log_dir.glob("*.log"):
        assert not any(line.startswith('{"name"') for line in log.read_text(errors="replace").splitlines())


def test_a_request_of_several_images_answers_a_row_per_image(stack: LocalStack) -> None:
    """tritonclient sends a batch of 5 images as binary, and JSON a batch of 2 under an Idempotency-Key:
    a row of logits per image, each equal to local torch's; each image was a task of its own (the
    task ids in the response); the same request again returns the same tasks. N = 0 and N = 65
    are 400."""
    import tritonclient.http as triton

    x = _image(7, rows=5)
    client = triton.InferenceServerClient(stack.url.removeprefix("http://"), network_timeout=60)
    try:
        batch_in = triton.InferInput("input", list(x.shape), "FP32")
        batch_in.set_data_from_numpy(x, binary_data=True)
        got = client.infer(MODEL, [batch_in], priority=1, timeout=TIMEOUT_US, headers=auth())
        assert got.as_numpy("logits").shape == (5, 10)
        _check(got.as_numpy("logits"), got.as_numpy("probabilities"), x)
        params = got.get_response()["parameters"]
        assert len(set(params["task_id"].split(","))) == 5 and "top_1" not in params
    finally:
        client.close()

    two = _image(8, rows=2)
    body = {"inputs": [{"name": "input", "shape": [2, 1, 8, 8], "datatype": "FP32", "data": two.tolist()}],
            "parameters": {"timeout": TIMEOUT_US}}
    with httpx.Client(base_url=stack.url, headers=auth(), timeout=60) as http:
        key = {"Idempotency-Key": "v2-rows-1"}
        first = http.post(f"/v2/models/{MODEL}/infer", json=body, headers=key)
        again = http.post(f"/v2/models/{MODEL}/infer", json=body, headers=key)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        ids = first.json()["parameters"]["task_id"]
        assert len(set(ids.split(","))) == 2 and again.json()["parameters"]["task_id"] == ids
        assert first.json()["id"] == first.json()["parameters"]["task_id"]  # no request id: the task ids
        logits = np.array(first.json()["outputs"][0]["data"], np.float32).reshape(2, 10)
        _check(logits, None, two)
        for rows in (0, 65):
            bad = {"inputs": [{"name": "input", "shape": [rows, 1, 8, 8], "datatype": "FP32",
                               "data": [0.0] * (64 * rows)}]}
            r = http.post(f"/v2/models/{MODEL}/infer", json=bad)
            assert r.status_code == 400 and "N from 1 to 64" in r.json()["error"], r.text
