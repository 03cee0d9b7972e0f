"""JSON views of tasks and models for the public API (pure functions of the stored task hash)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgesplit import wire
from edgesplit.models.spec import ModelSpec


def top_k(logits: np.ndarray, k: int) -> list[dict[str, float | int]]:
    """The k best classes with their logit and softmax probability, best first."""
    z = logits.astype(np.float64).ravel()
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-z, kind="stable")[:k]
    return [{"class": int(i), "logit": float(z[i]), "prob": float(p[i])} for i in order]


def _f(info: dict[str, Any], key: str) -> float | None:
    value = info.get(key)
    return None if value in (None, "") else float(value)


def task_view(info: dict[str, Any], k: int = 5, with_logits: bool = True) -> dict[str, Any]:
    """What ``GET /v1/tasks/{id}`` answers: status, times (Unix seconds and durations), top-k, timings."""
    submitted, claimed, finished = _f(info, "submitted"), _f(info, "claimed"), _f(info, "finished")
    out: dict[str, Any] = {
        "id": info.get("id"), "model": info.get("model"), "status": info.get("status"),
        "priority": int(info.get("priority", 0)), "attempts": int(info.get("attempts", 0)),
        "submitted": submitted, "deadline": _f(info, "deadline"), "started": claimed, "finished": finished,
        "queue_s": None if claimed is None or submitted is None else claimed - submitted,
        "e2e_s": None if finished is None or submitted is None else finished - submitted,
    }
    if info.get("error"):
        out["error"] = info["error"]
    if "logits" in info:
        logits = wire.decode(info["logits"])
        out["top_k"] = top_k(logits, k)
        if with_logits:
            out["logits"] = [float(v) for v in logits.ravel()]
    for key in ("timings", "route"):
        if info.get(key):
            out[key] = json.loads(info[key])
    return out


def model_metadata(spec: ModelSpec) -> dict[str, Any]:
    """KServe V2 model metadata."""
    return {"name": spec.name, "versions": ["1"], "platform": "edgesplit",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, *spec.input]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, spec.num_classes]}],
            "parameters": {"edge_layers": spec.n_edge, "edge_gflops": spec.edge_flops() / 1e9,
                           "cloud_gflops": spec.cloud_flops() / 1e9}}


def v2_input(payload: Any, spec: ModelSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """The input tensor (1, C, H, W) and the parameters of a KServe V2 JSON infer request."""
    from edgesplit.errors import InvalidInput

    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise InvalidInput('expected a JSON object with "inputs": [one tensor {name, shape, datatype, data}]')
    tensor = payload["inputs"][0]
    if not isinstance(tensor, dict) or tensor.get("datatype", "FP32") not in ("FP32", "FP64"):
        raise InvalidInput("input datatype must be FP32 (or FP64)")
    shape = tensor.get("shape")
    want = list(spec.input)
    if shape not in (want, [1, *want]):
        raise InvalidInput(f"input shape {shape} does not match model {spec.name}: expected {[1, *want]}")
    try:
        x = np.asarray(tensor.get("data"), dtype=np.float32).reshape(1, *want)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"input data does not hold {int(np.prod(want))} numbers: {e}") from e
    if not np.isfinite(x).all():
        raise InvalidInput("input data has NaN or infinite values")
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput('"parameters" must be an object')
    return np.ascontiguousarray(x), params


def v2_output(info: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    """KServe V2 infer response of a finished task."""
    logits = wire.decode(info["logits"]).ravel()
    return {"model_name": spec.name, "id": info["id"],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, spec.num_classes],
                         "data": [float(v) for v in logits]}],
            "parameters": {"task_id": info["id"], "top_1": int(np.argmax(logits))}}
