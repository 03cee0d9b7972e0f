"""The official gRPC clients against an orchestrator's V2 gRPC service, one client per process.

``python -m tests.integration.grpc_clients triton|kserve HOST:PORT TOKEN X.npy`` calls health,
metadata, readiness and inference (request id, priority 0, a timeout in microseconds) and prints one
JSON object with what came back. A process of its own because tritonclient.grpc and the KServe SDK
each register the protocol's messages (package ``inference``) in protobuf's one descriptor pool, so
the two cannot be imported into one process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np

MODEL = "digits-cnn"
TIMEOUT_US = 20_000_000


def triton(url: str, token: str, x: np.ndarray) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    auth = {"authorization": f"Bearer {token}"}
    client = grpcclient.InferenceServerClient(url)
    out: dict[str, Any] = {"live": client.is_server_live(), "ready": client.is_server_ready(),
                           "model_ready": client.is_model_ready(MODEL, "1", headers=auth)}
    out["server"] = client.get_server_metadata(headers=auth, as_json=True)
    out["metadata"] = client.get_model_metadata(MODEL, "1", headers=auth, as_json=True)
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(MODEL, [tensor], model_version="1", request_id="triton-grpc", priority=0,
                          timeout=TIMEOUT_US, headers=auth)
    out["id"] = result.get_response(as_json=True)["id"]
    out["logits"] = result.as_numpy("logits").tolist()
    out["probabilities"] = result.as_numpy("probabilities").tolist()
    errors = {}
    calls = {"no_token": lambda: client.get_model_metadata(MODEL),
             "version_2": lambda: client.get_model_metadata(MODEL, "2", headers=auth),
             "priority_11": lambda: client.infer(MODEL, [tensor], priority=11, headers=auth)}
    for name, call in calls.items():
        try:
            call()
            errors[name] = "OK"
        except InferenceServerException as e:
            errors[name] = str(e.status())
    out["errors"] = errors
    client.close()
    return out


def kserve(url: str, token: str, x: np.ndarray) -> dict[str, Any]:
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def run() -> dict[str, Any]:
        auth = (("authorization", f"Bearer {token}"),)
        client = InferenceGRPCClient(url, timeout=60)
        try:
            out: dict[str, Any] = {"live": await client.is_server_live(),
                                   "ready": await client.is_server_ready(),
                                   "model_ready": await client.is_model_ready(MODEL, headers=auth)}
            tensor = InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=True)
            request = InferRequest(MODEL, [tensor], request_id="kserve-grpc",
                                   parameters={"priority": 0, "timeout": TIMEOUT_US})
            response = await client.infer(request, headers=auth)
            out["id"] = response.id
            outputs = {o.name: o.as_numpy().tolist() for o in response.outputs}
            out.update(outputs)
            return out
        finally:
            await client.close()

    return asyncio.run(run())


def main() -> None:
    which, url, token, path = sys.argv[1:5]
    x = np.load(path)
    print(json.dumps((triton if which == "triton" else kserve)(url, token, x)))


if __name__ == "__main__":
    main()
