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


MODEL_VERSION = "1"
"""The one version of every deployed model (its weights do not change while it is served)."""
MAX_ROWS = 64
"""Most images one V2 infer request may hold (its input's first dimension); each is a task of its own."""


def model_metadata(spec: ModelSpec) -> dict[str, Any]:
    """KServe V2 model metadata: one FP32 input ``input`` (N, C, H, W), N from 1 to ``MAX_ROWS`` (-1:
    variable, as the protocol writes it); outputs ``logits`` and their softmax ``probabilities``, both
    FP32 (N, classes). ``parameters.max_batch_size`` is N's bound, as Triton names it."""
    classes = [-1, spec.num_classes]
    return {"name": spec.name, "versions": [MODEL_VERSION], "platform": "edgesplit",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *spec.input]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": classes},
                        {"name": "probabilities", "datatype": "FP32", "shape": classes}],
            "parameters": {"edge_layers": spec.n_edge, "edge_gflops": spec.edge_flops() / 1e9,
                           "cloud_gflops": spec.cloud_flops() / 1e9, "max_batch_size": MAX_ROWS}}
