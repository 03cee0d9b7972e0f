"""The orchestrator's KServe V2 / Open Inference Protocol routes (docs/API.md).

``GET /v2``, ``GET /v2/models/{model}``, ``GET /v2/models/{model}/ready`` and
``POST /v2/models/{model}/infer``, behind ``api_token`` when one is set. The open health routes
(``/v2/health/live``, ``/v2/health/ready``) stay in :mod:`services.orchestrator.api`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from edgesplit import wire
from edgesplit.errors import EdgesplitError, InvalidInput, TaskExpired, Unavailable
from services.common.security import bearer_auth
from services.orchestrator.service import MAX_WAIT_S, Orchestrator
from services.orchestrator.views import model_metadata, v2_input, v2_output


def _number(raw: str | None, name: str, cast: type, default: Any) -> Any:
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as e:
        raise InvalidInput(f"{name}={raw!r} must be a number") from e


def v2_router(orch: Orchestrator) -> APIRouter:
    """The V2 inference routes of ``orch``."""
    router = APIRouter(dependencies=[Depends(bearer_auth(orch.settings.api_token))])
    s = orch.settings

    @router.get("/v2", tags=["kserve-v2"])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "edgesplit", "version": "0.1.0", "extensions": ["priority", "timeout"]}

    @router.get("/v2/models/{model}", tags=["kserve-v2"])
    async def metadata(model: str) -> dict[str, Any]:
        return model_metadata(orch.spec(model))

    @router.get("/v2/models/{model}/ready", tags=["kserve-v2"])
    async def model_ready(model: str) -> JSONResponse:
        orch.spec(model)
        reason = await orch.not_ready()
        return JSONResponse({"name": model, "ready": reason is None},
                            status_code=200 if reason is None else 503)

    @router.post("/v2/models/{model}/infer", tags=["kserve-v2"])
    async def infer(model: str, request: Request) -> dict[str, Any]:
        """Synchronous inference (JSON tensors); ``parameters.priority`` and ``parameters.timeout``."""
        spec = orch.spec(model)
        try:
            payload = await request.json()
        except ValueError as e:
            raise InvalidInput(f"body is not JSON: {e}") from e
        x, params = v2_input(payload, spec)
        prio = _number(str(params.get("priority", "")), "parameters.priority", int, s.max_priority // 2 or 1)
        limit = _number(str(params.get("timeout", "")), "parameters.timeout", float, s.default_timeout_s)
        orch.check_request(prio, limit)
        sub = await orch.enqueue(model, wire.encode(x), prio, limit, request.headers.get("idempotency-key"))
        info = await orch.wait(sub.id, min(limit + 1.0, MAX_WAIT_S), queued=not sub.duplicate)
        if info["status"] == "done":
            return v2_output(info, spec)
        if info["status"] in ("queued", "running"):  # the request gives up: so does its task
            with contextlib.suppress(EdgesplitError):
                await orch.cancel(sub.id)
        if info["status"] in ("expired", "queued", "running"):
            raise TaskExpired(f"task {sub.id} did not finish within its timeout of {limit} s "
                              f"(status {info['status']})")
        raise Unavailable(f"task {sub.id} {info['status']}: {info.get('error', 'no detail')}")

    return router
