"""Pieces every service app is built from: health routes, metrics, NPY request/response helpers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edgesplit import wire
from services.common.errors import UnsupportedMediaType, install_error_handlers
from services.common.security import BodySizeLimit

NPY_TYPES = (wire.CONTENT_TYPE, "application/octet-stream")

ReadyCheck = Callable[[], str | None]


def base_app(title: str, max_body_bytes: int, docs: bool, lifespan: object) -> FastAPI:
    """A FastAPI app with the error handlers and the body limit; ``/docs`` and ``/openapi.json`` only
    with ``docs`` (the service's ``docs`` setting, off by default: the pages map every endpoint)."""
    app = FastAPI(title=title, lifespan=lifespan,  # type: ignore[arg-type]
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    return app


def health_router(not_ready: ReadyCheck) -> APIRouter:
    """KServe V2 liveness (the process answers) and readiness (``not_ready()`` returns None)."""
    router = APIRouter(tags=["health"])

    @router.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        reason = not_ready()
        if reason is None:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "error": reason}, status_code=503)

    return router


def metrics_response(registry: CollectorRegistry) -> Response:
    """The Prometheus text exposition of ``registry``."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def check_npy_request(request: Request) -> None:
    """415 unless the body is declared as NPY (``application/x-npy``), octet-stream, or undeclared."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind not in NPY_TYPES:
        raise UnsupportedMediaType(f"content type {kind!r} is not read here; send an NPY array as "
                                   f"{wire.CONTENT_TYPE}")


def npy_response(array: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    """An NPY v1 answer."""
    return Response(wire.encode(array), media_type=wire.CONTENT_TYPE, headers=headers)
