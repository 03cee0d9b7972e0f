"""The orchestrator's KServe V2 / Open Inference Protocol routes (docs/API.md, "KServe V2").

``GET /v2`` (server metadata), and per model, plain or versioned (``/versions/1``, the version the
metadata names): ``GET /v2/models/{model}`` (metadata), ``GET .../ready`` (this model's readiness),
``POST .../infer`` (synchronous inference: JSON or binary tensors, ``id`` echoed, ``outputs``
selection, Triton's ``priority`` and ``timeout`` in microseconds). Behind ``api_token`` when one
is set. Decoding and encoding are :mod:`services.orchestrator.oip`'s; here the routes only decode,
call the orchestrator, encode. Bad requests answer 400, as the protocol says. The open health routes
(``/v2/health/live``, ``/v2/health/ready``) are in :mod:`services.orchestrator.api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from importlib import metadata
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from edgesplit import wire
from edgesplit.errors import EdgesplitError, InvalidInput, ModelNotFound, TaskExpired, Unavailable
from edgesplit.models.spec import ModelSpec
from services.common import tracing
from services.common.security import bearer_auth, read_body
from services.orchestrator import oip
from services.orchestrator.oip import BadRequest
from services.orchestrator.queue import TERMINAL, Submitted
from services.orchestrator.ratelimit import scoped_idempotency_key
from services.orchestrator.service import MAX_WAIT_S, Orchestrator
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.views import MAX_ROWS, model_metadata
from services.orchestrator.views import MODEL_VERSION as VERSION

INPUT = "input"
INPUT_TYPES = ("FP32", "FP16", "FP64")
OUTPUTS = ("logits", "probabilities")
EXTENSIONS = ["binary_tensor_data", "parameters"]
"""Triton's names of the protocol extensions served here (server metadata)."""


class V2Route(APIRoute):
    """A route whose request errors answer 400 (the protocol's status for a bad request) where the
    rest of the API answers 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except InvalidInput as e:
                if e.status != 422:
                    raise
                raise BadRequest(str(e)) from e

        return run


def schedule(params: oip.Parameters, s: OrchestratorSettings) -> tuple[int, float]:
    """Priority and timeout (seconds) of a V2 request, Triton's way: ``priority`` 0 or absent is the
    default (``max_priority // 2``), 1 the most urgent; ``timeout`` in microseconds, 0 or absent is
    ``default_timeout_s``."""
    prio = params.get("priority", 0)
    if isinstance(prio, bool) or not isinstance(prio, int) or not 0 <= prio <= s.max_priority:
        raise BadRequest(f"parameters.priority {prio!r} must be an integer from 0 (the default, "
                         f"{s.max_priority // 2 or 1}) or 1 (most urgent) to {s.max_priority}")
    timeout = params.get("timeout", 0)
    limit_us = s.max_timeout_s * 1e6
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout <= limit_us:
        raise BadRequest(f"parameters.timeout {timeout!r} must be a number of microseconds from 0 (the "
                         f"default, {s.default_timeout_s:g} s) to {limit_us:.0f} ({s.max_timeout_s:g} s)")
    if params.get("sequence_id") not in (None, 0, ""):
        raise BadRequest("sequence batching (parameters.sequence_id) is not supported")
    return prio or s.max_priority // 2 or 1, timeout / 1e6 if timeout else s.default_timeout_s


def image_input(decoded: oip.Decoded, spec: ModelSpec) -> np.ndarray:
    """The images (N, C, H, W) float32 of the request's one input ``input``: shape (N, C, H, W) with
    1 <= N <= ``MAX_ROWS``, or one image (C, H, W)."""
    image = list(spec.input)
    if len(decoded.arrays) != 1 or decoded.request.inputs[0].name != INPUT:
        names = [t.name for t in decoded.request.inputs]
        raise BadRequest(f"model {spec.name} takes one input named {INPUT!r}, got {names}")
    tensor, x = decoded.request.inputs[0], decoded.arrays[0]
    if tensor.datatype not in INPUT_TYPES:
        raise BadRequest(f"input datatype {tensor.datatype} is not accepted: send FP32 (or FP16, FP64)")
    shape = list(tensor.shape)
    rows = 1 if shape == image else shape[0] if len(shape) == len(image) + 1 and shape[1:] == image else 0
    if not 1 <= rows <= MAX_ROWS:
        raise BadRequest(f"input shape {shape} does not match model {spec.name}: expected [N, "
                         f"{', '.join(map(str, image))}] with N from 1 to {MAX_ROWS} images (or "
                         f"{image}, one image)")
    if not np.isfinite(x).all():
        raise BadRequest("input data has NaN or infinite values")
    return np.ascontiguousarray(x, dtype=np.float32).reshape(rows, *image)


def selected_outputs(request: oip.InferRequest, logits: np.ndarray) -> list[tuple[str, np.ndarray, bool]]:
    """The outputs asked for (all, logits first, when ``outputs`` is absent) with their binary flag."""
    names = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
    for wanted in request.outputs or ():
        if wanted.name not in OUTPUTS:
            raise BadRequest(f"unknown output {wanted.name!r}: this model has {', '.join(OUTPUTS)}")
        if "classification" in wanted.parameters:
            raise BadRequest("the classification extension is not supported: ask for probabilities")
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    arrays = {"logits": logits, "probabilities": (p / p.sum(axis=1, keepdims=True)).astype(np.float32)}
    return [(n, arrays[n], oip.wants_binary(request, n)) for n in dict.fromkeys(names)]


JSON_MAX_VALUES = 1 << 18
"""Most input values a JSON (not binary) infer request may write out: 64 alexnet-paper images, one
vgg16-paper image. Parsed, they are Python objects on the event loop: 64 alexnet-paper images (196,608
values) took 23 ms flat and 41 ms as nested lists, one vgg16-paper image 36 ms; a 16 MB body of ``0,``
(8 million) took 1 s and 470 MB. More images go as binary tensors."""


def json_values(spec: ModelSpec) -> int:
    """Most input values a JSON infer request of ``spec`` may hold: ``MAX_ROWS`` images, at most
    ``JSON_MAX_VALUES``."""
    return min(MAX_ROWS * int(np.prod(spec.input)), JSON_MAX_VALUES)


def json_limit(spec: ModelSpec, max_body_bytes: int) -> int:
    """Most bytes a JSON infer request of ``spec`` may have: room for its ``json_values`` written out in
    full (48 bytes each, more than ``repr`` of any float and its separator) plus 64 KiB, and never
    more than the body limit."""
    return min(max_body_bytes, 64 * 1024 + 48 * json_values(spec))


class V2Api:
    """The handlers, over one orchestrator."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self.s = orch.settings

    def spec(self, model: str, version: str | None) -> ModelSpec:
        spec = self.orch.spec(model)
        if version is not None and version != VERSION:
            raise ModelNotFound(f"model {model!r} has no version {version!r}; versions: {VERSION}")
        return spec

    def metadata(self, model: str, version: str | None) -> dict[str, Any]:
        return model_metadata(self.spec(model, version))

    async def not_ready(self, model: str) -> str | None:
        """None when this model can serve: its weights loaded, the service ready, and (with
        pipelines) a route for it over the executors up."""
        if model not in self.orch.models:
            return f"the weights of {model} are not loaded yet"
        reason = await self.orch.not_ready()
        if reason is not None or not self.s.workers:
            return reason
        runner = self.orch.runners.get(model)
        if runner is None:
            return f"no pipeline runs {model}"
        try:
            await runner.plans.route()
        except EdgesplitError as e:
            return f"no route for {model}: {e}"
        return None

    async def ready(self, model: str, version: str | None) -> JSONResponse:
        self.spec(model, version)
        reason = await self.not_ready(model)
        body: dict[str, Any] = {"name": model, "ready": reason is None}
        if reason is not None:
            body["error"] = reason
        return JSONResponse(body, status_code=200 if reason is None else 503)

    async def infer(self, model: str, version: str | None, request: Request) -> Response:
        spec = self.spec(model, version)
        raw = await read_body(request, self.s.max_body_bytes)
        body = oip.decompress(bytes(raw), request.headers.get("content-encoding"), self.s.max_body_bytes)
        decoded = oip.parse_request(body, request.headers.get(oip.HEADER_LENGTH),
                                    json_limit(spec, self.s.max_body_bytes), json_values(spec))
        idem = scoped_idempotency_key(request, self.s.api_token, request.headers.get("idempotency-key"))
        head, outputs = await self.run(model, version, decoded, idem)  # keys scoped per client
        content, json_len = oip.encode_response(head, outputs)
        if json_len is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type=oip.BINARY_CONTENT_TYPE,
                        headers={oip.HEADER_LENGTH: str(json_len)})

    async def run(self, model: str, version: str | None, decoded: oip.Decoded,
                  idem_key: str | None = None) -> tuple[dict[str, Any], list[tuple[str, np.ndarray, bool]]]:
        """Queue a decoded request's tasks (one per image), wait for them; the response's head and its
        outputs (name, array with a row per image, as binary). Shared by REST and gRPC."""
        spec = self.spec(model, version)
        x = image_input(decoded, spec)
        selected_outputs(decoded.request, np.zeros((1, spec.num_classes), np.float32))  # 400s first
        prio, limit = schedule(decoded.request.parameters, self.s)
        self.orch.check_request(prio, limit)
        subs = await self._enqueue(model, x, prio, limit, idem_key)
        for sub in subs:  # the pipeline's spans of these tasks continue this request's trace
            tracing.remember_task(sub.id)
        try:
            infos = await asyncio.gather(*(self._result(sub.id, limit, queued=not sub.duplicate)
                                           for sub in subs))
        finally:
            for sub in subs:
                tracing.forget_task(sub.id)
        failed = [(sub, info) for sub, info in zip(subs, infos, strict=True) if info["status"] != "done"]
        if failed:  # the request gives up: so do its tasks still queued or running
            await self._cancel([sub.id for sub, info in zip(subs, infos, strict=True)
                                if info["status"] in ("queued", "running")])
            raise self._failure(failed[0][0].id, failed[0][1], limit)
        logits = np.concatenate([wire.decode(info["logits"]).reshape(1, spec.num_classes) for info in infos])
        params: dict[str, Any] = {"task_id": ",".join(sub.id for sub in subs), "priority": prio}
        if len(subs) == 1:
            params["top_1"] = int(np.argmax(logits))
        head = {"model_name": model, "model_version": VERSION, "id": decoded.request.id or params["task_id"],
                "parameters": params}
        return head, selected_outputs(decoded.request, logits)

    async def _enqueue(self, model: str, x: np.ndarray, prio: int, limit: float,
                       idem_key: str | None) -> list[Submitted]:
        """One task per image (row i's Idempotency-Key is the request's with ``#i`` added when there are
        several). When one is refused (a full queue), those already queued are cancelled: a request
        is queued whole or not at all."""
        subs: list[Submitted] = []
        try:
            for i in range(x.shape[0]):
                key = idem_key if idem_key is None or x.shape[0] == 1 else f"{idem_key}#{i}"
                subs.append(await self.orch.enqueue(model, wire.encode(x[i : i + 1]), prio, limit, key))
        except Exception:
            await self._cancel([sub.id for sub in subs if not sub.duplicate])
            raise
        return subs

    async def _cancel(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            with contextlib.suppress(EdgesplitError):
                await self.orch.cancel(task_id)

    async def _result(self, task_id: str, limit: float, queued: bool) -> dict[str, Any]:
        """The task once final, or as it is one second past its timeout (long timeouts: several waits)."""
        end = time.monotonic() + limit + 1.0
        while True:
            left = end - time.monotonic()
            info = await self.orch.wait(task_id, max(0.0, min(left, MAX_WAIT_S)), queued=queued)
            queued = False
            if info["status"] in TERMINAL or left <= MAX_WAIT_S:
                return info

    @staticmethod
    def _failure(task_id: str, info: dict[str, Any], limit: float) -> EdgesplitError:
        status = info["status"]
        if status in ("expired", "queued", "running"):
            return TaskExpired(f"task {task_id} did not finish within its timeout of {limit:g} s "
                               f"(status {status})")
        return Unavailable(f"task {task_id} {status}: {info.get('error', 'no detail')}")


def v2_router(orch: Orchestrator) -> APIRouter:
    """The V2 routes of ``orch`` (module docstring)."""
    api = V2Api(orch)
    router = APIRouter(dependencies=[Depends(bearer_auth(orch.settings.api_token))],
                       route_class=V2Route, tags=["kserve-v2"])
    server = {"name": "edgesplit", "version": metadata.version("edgesplit"), "extensions": EXTENSIONS}

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        """Server name, version and the protocol extensions it serves."""
        return server

    @router.get("/v2/models/{model}")
    async def model_meta(model: str) -> dict[str, Any]:
        """Model metadata: versions, inputs, outputs."""
        return api.metadata(model, None)

    @router.get("/v2/models/{model}/versions/{version}")
    async def model_version_meta(model: str, version: str) -> dict[str, Any]:
        return api.metadata(model, version)

    @router.get("/v2/models/{model}/ready")
    async def model_ready(model: str) -> JSONResponse:
        """200 when this model can serve now, else 503 with the reason."""
        return await api.ready(model, None)

    @router.get("/v2/models/{model}/versions/{version}/ready")
    async def model_version_ready(model: str, version: str) -> JSONResponse:
        return await api.ready(model, version)

    @router.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        """Synchronous inference: JSON or binary tensors in and out (docs/API.md)."""
        return await api.infer(model, None, request)

    @router.post("/v2/models/{model}/versions/{version}/infer")
    async def infer_version(model: str, version: str, request: Request) -> Response:
        return await api.infer(model, version, request)

    return router
