"""The orchestrator's HTTP layer (docs/API.md): decode, call the service, encode.

Public: ``POST /v1/tasks``, ``GET /v1/tasks/{id}``, ``GET /v1/models``, ``GET /v1/status`` (behind
``api_token`` when one is set; the KServe V2 inference routes are in :mod:`services.orchestrator.v2`);
open: ``/v2/health/live``, ``/v2/health/ready``, ``/metrics``. Errors are ``{"error": "..."}`` with
the status of the domain error.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from edgesplit.errors import EdgesplitError, InvalidInput
from services.common.security import bearer_auth, read_body
from services.orchestrator.queue import TERMINAL
from services.orchestrator.ratelimit import scoped_idempotency_key
from services.orchestrator.service import MAX_WAIT_S, Orchestrator
from services.orchestrator.views import model_metadata, task_view

IDEM = Header(alias="Idempotency-Key", max_length=200, description="repeat-safe submit key")


def _orch(request: Request) -> Orchestrator:
    orch: Orchestrator = request.app.state.orchestrator
    return orch


async def _upload(request: Request, limit: int) -> tuple[bytes, dict[str, str]]:
    """The image bytes and any form fields: multipart (field ``image`` or ``file``) or a raw body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("image") or form.get("file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if upload is None or isinstance(upload, str):
            raise InvalidInput("multipart upload without a file field named 'image' or 'file'")
        return await upload.read(), fields
    return bytes(await read_body(request, limit)), {}


# Python's int() and float() also take "٣", "1_000", " 3", "nan" and "inf": the API says integer or
# number, so ASCII digits only (a priority of "٣" is refused, not read as 3)
_INT = re.compile(r"-?[0-9]{1,9}")
_FLOAT = re.compile(r"-?(?:[0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})(?:[eE][-+]?[0-9]{1,3})?")


def _number(raw: str | None, name: str, cast: type, default: Any) -> Any:
    if raw is None or raw == "":
        return default
    if (_INT if cast is int else _FLOAT).fullmatch(raw) is None:
        kind = "an integer" if cast is int else "a number"
        raise InvalidInput(f"{name}={raw!r} must be {kind} in ASCII digits, e.g. {name}=3")
    value = cast(raw)
    if not math.isfinite(value):
        raise InvalidInput(f"{name}={raw!r} must be a finite number")
    return value


def public_router(orch: Orchestrator) -> APIRouter:
    router = APIRouter(dependencies=[Depends(bearer_auth(orch.settings.api_token))])
    s = orch.settings

    @router.post("/v1/tasks", status_code=202, tags=["tasks"])
    async def submit(request: Request, model: str | None = None, priority: str | None = None,
                     timeout: str | None = None, idem: Annotated[str | None, IDEM] = None,
                     wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0,
                     top_k: Annotated[int, Query(ge=1, le=1000)] = 5,
                     logits: bool = True) -> JSONResponse:
        """Queue one image task. Body: PNG/JPEG/NPY (raw, or multipart field ``image``). 202 with the id.

        ``wait`` > 0: also wait up to that many seconds for the result, as ``GET /v1/tasks/{id}?wait=``
        does, and answer 200 with the task (``top_k``, ``logits``) once it has a final status (one
        round trip instead of two); still 202 with the id when it has none by then.
        """
        body, form = await _upload(request, s.max_body_bytes)
        name = model or form.get("model") or s.models[0]
        orch.spec(name)
        prio = _number(priority or form.get("priority"), "priority", int, s.max_priority // 2 or 1)
        limit = _number(timeout or form.get("timeout"), "timeout", float, None)
        try:
            sub = await orch.submit(name, body, prio, limit,
                                    scoped_idempotency_key(request, s.api_token, idem))  # per client
        except EdgesplitError as e:
            orch.metrics.rejected.labels(str(e.status)).inc()
            raise
        url = f"/v1/tasks/{sub.id}"
        if wait > 0:
            info = await orch.wait(sub.id, wait, queued=not sub.duplicate)
            if info["status"] in TERMINAL:
                view = {**task_view(info, top_k, logits), "duplicate": sub.duplicate, "url": url}
                return JSONResponse(view, headers={"Location": url})
        body_out = {"id": sub.id, "status": "queued", "model": name, "priority": prio,
                    "duplicate": sub.duplicate, "url": url}
        return JSONResponse(body_out, status_code=202, headers={"Location": url})

    @router.get("/v1/tasks/{task_id}", tags=["tasks"])
    async def get_task(task_id: str, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0,
                       top_k: Annotated[int, Query(ge=1, le=1000)] = 5,
                       logits: bool = True) -> dict[str, Any]:
        """Status, top-k, per-stage timings; ``wait`` long-polls up to that many seconds for the result."""
        return task_view(await orch.wait(task_id, wait), top_k, logits)

    @router.delete("/v1/tasks/{task_id}", tags=["tasks"])
    async def cancel_task(task_id: str) -> dict[str, Any]:
        """Cancel a queued or running task: 200 with status ``cancelled``; 404 unknown; 409 already final."""
        return {"id": task_id, "status": await orch.cancel(task_id)}

    @router.get("/v1/models", tags=["models"])
    async def models() -> dict[str, Any]:
        out = {}
        for name, spec in orch.specs.items():
            runner = orch.runners.get(name)
            current = runner.plans.current if runner is not None else None
            out[name] = {**model_metadata(spec), "queued": await orch.queue.queue_len(name),
                         "route": None if current is None else {
                             "source": current.source, "version": current.version,
                             "steps": [st.to_dict() for st in current.steps]}}
        return {"models": out, "mode": s.mode, "pipeline": s.pipeline, "aging_s": s.aging_s,
                "max_batch": s.max_batch}

    @router.get("/v1/status", tags=["models"])
    async def status() -> dict[str, Any]:
        return {"executors": orch.pool.describe() if orch.pool else [], "cloud_up": orch.cloud_up,
                "in_flight": {m: len(r.active) for m, r in orch.runners.items()}}

    return router


def open_router(orch: Orchestrator) -> APIRouter:
    router = APIRouter()

    @router.get("/v2/health/live", tags=["health"])
    async def live() -> JSONResponse:
        reason = orch.not_live()  # a background loop that cannot run: restart the process
        if reason is None:
            return JSONResponse({"live": True})
        return JSONResponse({"live": False, "error": reason}, status_code=503)

    @router.get("/v2/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        reason = await orch.not_ready()
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": reason}, status_code=503)

    if not orch.settings.metrics:  # the metrics setting off: no /metrics at all (404)
        return router

    @router.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        await orch.refresh_metrics()
        return Response(orch.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
