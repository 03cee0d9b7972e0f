"""The allocator's HTTP layer (controller co2): health, metrics, plans, decisions, admin re-plan.

Endpoints (docs/API.md): ``GET /v2/health/live``, ``GET /v2/health/ready`` (open);
``GET /metrics``, ``GET /v1/plan/{model}``, ``GET /v1/decisions``, ``GET /v1/measurements`` (behind the
internal bearer token when one is configured); ``POST /v1/replan`` (the admin token only: 401 without
a bearer token, 403 with another one or when no admin token is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edgesplit.errors import EdgesplitError, ModelNotFound, Unavailable
from edgesplit.plan.cluster import Cluster, load_cluster
from services.allocator.kube import KubeExecutors, in_cluster_api, own_namespace
from services.allocator.loop import Controller
from services.allocator.metrics import AllocatorMetrics
from services.allocator.settings import AllocatorSettings
from services.common.errors import Unauthorized
from services.common.http import new_http_client
from services.common.httpmetrics import instrument_http
from services.common.models import deployment_specs
from services.common.redisconn import redis_client
from services.common.security import bearer_auth
from services.common.tracing import trace_app
from services.common.web import base_app, health_router, metrics_response

log = logging.getLogger("edgesplit.allocator")


class Forbidden(EdgesplitError):
    """A valid bearer token that may not do this (HTTP 403)."""

    status = 403


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def internal_auth(settings: AllocatorSettings) -> Callable[..., Awaitable[None]]:
    """The internal token (or the admin one) when a token is configured; 401 otherwise."""
    return bearer_auth(settings.token, settings.admin_token)


def admin_auth(settings: AllocatorSettings) -> Callable[..., Awaitable[None]]:
    """The admin token: 401 without a bearer token, 403 with another one or with none configured
    (read by ``fastapi.security.HTTPBearer``, so OpenAPI documents the scheme)."""
    scheme = HTTPBearer(auto_error=False, description="the allocator's admin token")

    async def check(request: Request,
                    credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if credentials is None and request.headers.get("authorization") is None:
            raise Unauthorized("missing bearer token: POST /v1/replan needs the admin token")
        if settings.admin_token is None:
            raise Forbidden("re-planning by API is disabled: set EDGESPLIT_ALLOCATOR_ADMIN_TOKEN")
        if not _same(None if credentials is None else credentials.credentials, settings.admin_token):
            raise Forbidden("this token may not re-plan: POST /v1/replan needs the admin token")

    return check


def resolve_models(settings: AllocatorSettings, base: Cluster | None) -> list[str]:
    """The models to plan: ``models`` when set, else the cluster file's ``models``, else the default."""
    if "models" not in settings.model_fields_set and base is not None and base.models:
        return list(base.models)
    return list(settings.models)


def make_kube(settings: AllocatorSettings) -> KubeExecutors:
    return KubeExecutors(in_cluster_api(), settings.namespace or own_namespace(), settings.executor_selector,
                         settings.executor_container, settings.executor_port)


def current(request: Request) -> Controller:
    """The app's controller (created at start-up); 503 before it exists."""
    controller: Controller | None = getattr(request.app.state, "controller", None)
    if controller is None:
        raise Unavailable("the allocator is starting")
    return controller


Ctl = Annotated[Controller, Depends(current)]


def _routes(router: APIRouter, metrics: AllocatorMetrics) -> None:
    @router.get("/v1/plan/{model}")
    async def plan(model: str, controller: Ctl) -> dict[str, Any]:
        if model not in controller.specs:
            raise ModelNotFound(f"model {model!r} is not planned here; planned: "
                                f"{', '.join(controller.specs)}")
        found = controller.plans.get(model)
        if found is None:
            raise Unavailable(f"no plan for {model} yet: no executor has answered")
        return found.to_dict()

    @router.get("/v1/decisions")
    async def decisions(controller: Ctl, limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
                        model: str | None = None) -> dict[str, Any]:
        found = [d for d in controller.decisions if model is None or d["model"] == model]
        return {"decisions": found[-limit:]}

    @router.get("/v1/measurements")
    async def measurements(controller: Ctl) -> dict[str, Any]:
        return controller.measurements()

    @router.get("/metrics")
    async def prometheus() -> Response:
        return metrics_response(metrics.registry)



def _admin_routes(router: APIRouter) -> None:
    @router.post("/v1/replan")
    async def replan(controller: Ctl) -> dict[str, Any]:
        """Measure and re-plan now; the decisions made."""
        return {"decisions": await controller.replan_now("admin")}


def create_app(settings: AllocatorSettings, kube: KubeExecutors | None = None) -> FastAPI:
    """The allocator app; the control loop runs from start-up to shutdown. ``kube`` replaces the
    in-cluster client in Kubernetes mode (tests use a fake API server)."""
    base = load_cluster(settings.cluster_file) if settings.cluster_file is not None else None
    specs = deployment_specs(resolve_models(settings, base), settings.model_files)
    metrics = AllocatorMetrics()
    state: dict[str, Any] = {}

    def not_ready() -> str | None:
        controller: Controller | None = state.get("controller")
        if controller is None:
            return "starting"
        if controller.measured_at is None:
            return "no measurement yet"
        return None if state.get("redis_ok", False) else "Redis does not answer"

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
        redis = redis_client(settings.redis_url, health_check_interval_s=0, password=settings.redis_password)
        http = new_http_client(max(settings.http_timeout_s, 5.0))
        k = kube if kube is not None else (make_kube(settings) if settings.kubernetes else None)
        controller = Controller(settings, specs, base, redis, http, metrics, k)
        state["controller"] = _app.state.controller = controller
        controller.start_watch(asyncio.get_running_loop())
        tasks = [asyncio.create_task(controller.run()), asyncio.create_task(_ping(redis, state))]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await controller.aclose()
            await http.aclose()
            await redis.aclose()

    app = base_app("edgesplit allocator", settings.max_body_bytes, settings.docs, lifespan)
    instrument_http(app, metrics.registry)
    trace_app(app, "allocator", settings)
    app.include_router(health_router(not_ready))
    api = APIRouter(dependencies=[Depends(internal_auth(settings))])
    admin = APIRouter(dependencies=[Depends(admin_auth(settings))])
    _routes(api, metrics)
    _admin_routes(admin)
    app.include_router(api)
    app.include_router(admin)
    return app


async def _ping(redis: aioredis.Redis, state: dict[str, Any], interval_s: float = 2.0) -> None:
    while True:
        try:
            state["redis_ok"] = bool(await redis.ping())
        except (aioredis.RedisError, OSError):
            state["redis_ok"] = False
        await asyncio.sleep(interval_s)
