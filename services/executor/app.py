"""The executor's HTTP layer: decode a slice request, run it in its sub-zone, encode the answer.

Endpoints (docs/API.md): ``POST /v1/slices/{model}``, ``POST /v1/echo``, ``GET|PUT /v1/quotas`` (the
quotas in force; a PUT replaces every owner's), ``GET|PUT /v1/quotas/{owner}`` (one owner's
namespace: ``services.common.channels``), ``GET /v1/info``, ``GET /metrics`` (all behind the bearer
token when one is configured) and ``GET /v2/health/live``, ``GET /v2/health/ready`` (open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request, Response

from edgesplit import wire
from edgesplit.errors import InvalidInput, Overloaded
from edgesplit.split import Slice
from services.common.channels import QUOTA_OWNERS
from services.common.compute import LAST, ThreadPolicy, UrgentGate
from services.common.httpmetrics import instrument_http
from services.common.models import ModelHost, deployment_specs
from services.common.security import bearer_auth, read_body
from services.common.settings import cpu_quota
from services.common.tracing import trace_app
from services.common.web import base_app, check_npy_request, health_router, metrics_response, npy_response
from services.executor.gone import ClientGone, unless_gone
from services.executor.metrics import ExecutorMetrics
from services.executor.pool import Quotas, ZonePool
from services.executor.settings import ExecutorSettings

log = logging.getLogger("edgesplit.executor")
TASK_ID = r"^[\x21-\x7e]*$"  # echoed in X-Task-Id: printable ASCII, never CR, LF or spaces


class ExecutorState(ModelHost):
    """What one executor holds: its deployed models (once loaded), sub-zones and metrics."""

    def __init__(self, settings: ExecutorSettings) -> None:
        super().__init__("executor", settings.name, deployment_specs(settings.models, settings.model_files),
                         "edge")
        self.settings = settings
        self.pool = ZonePool(settings.capacity, {n: s.n_edge for n, s in self.specs.items()},
                             settings.halo_max, settings.queue_max, ThreadPolicy.bulk(settings),
                             UrgentGate(settings.urgent_pause_s), ThreadPolicy.urgent(settings))
        self.metrics = ExecutorMetrics(self.pool)
        self._slices: dict[tuple[str, tuple[str | None, ...]], Slice] = {}

    def slice_of(self, model: str, params: Mapping[str, str]) -> Slice:
        """``wire.slice_from_params`` for a deployed model, remembered per distinct description (a plan
        sends the same few slices again and again; a refused one is not remembered)."""
        key = (model, tuple(params.get(n) for n in wire.SLICE_PARAMS))
        sl = self._slices.get(key)
        if sl is None:
            sl = wire.slice_from_params(params, self.deployed(model).spec)
            if len(self._slices) >= 1024:
                self._slices.clear()
            self._slices[key] = sl
        return sl

    async def load(self) -> None:
        """Load the edge layers of every deployed model off the event loop; ready afterwards."""
        s = self.settings
        if not await self.load_models(s.weights_dir, s.seed):
            return
        self.metrics.ready.set(1)
        log.info("executor %s ready: models %s, capacity %d threads%s", s.name, ", ".join(self.specs),
                 s.capacity(), "" if s.threads else " (the CPU limit)")

    def info(self) -> dict[str, Any]:
        quotas = self.pool.quotas()
        return {
            "name": self.settings.name,
            "capacity": self.pool.capacity,
            "ready": self.not_ready() is None,
            "models": {n: {"n_edge": s.n_edge, "input": list(s.input),
                           "weights": None if self.models is None else self.models[n].weights}
                       for n, s in self.specs.items()},
            "quotas": _quotas_json(quotas),
            "quota_owners": {o: _quotas_json(q) for o, q in self.pool.owned_quotas().items()},
            "zones": {m: sum(q.values()) for m, q in quotas.items()},
            "flops_per_thread": self.metrics.flops_per_thread,
            "cpu_quota": cpu_quota(),
        }


def _quotas_json(quotas: Quotas) -> dict[str, dict[str, int]]:
    return {m: {str(i): k for i, k in sorted(q.items())} for m, q in quotas.items()}


def _slice_routes(router: APIRouter, state: ExecutorState) -> None:
    limit = state.settings.max_body_bytes

    @router.post("/v1/slices/{model}", response_class=Response)
    async def run_slice(model: str, request: Request,
                        subzone: Annotated[int, Query(ge=0, le=4096, description="sub-zone (stage) index")],
                        task_id: Annotated[str, Query(max_length=128, pattern=TASK_ID)] = "",
                        priority: Annotated[int, Query(ge=-(1 << 20), le=LAST,
                                                       description="the task's (1 the most urgent)")] = LAST
                        ) -> Response:
        deployed = state.deployed(model)
        spec = deployed.spec
        sl = state.slice_of(model, request.query_params)
        state.pool.check_stage(model, subzone)
        check_npy_request(request)
        body = await read_body(request, limit)
        _, c, h, w = sl.in_shape(spec)
        x = wire.decode(body, expect_shape=(None, c, h, w))
        if x.shape[0] < 1:
            raise InvalidInput(f"empty batch: slice input has shape {list(x.shape)}, expected "
                               f"[N>=1, {c}, {h}, {w}]")
        try:  # a slice whose caller went away is not computed (services.executor.gone)
            run = await unless_gone(request, state.pool.run(deployed, subzone, sl, torch.from_numpy(x),
                                                            state.settings.slice_delay_s,
                                                            state.settings.urgent(priority)))
        except Overloaded:
            state.metrics.refused.labels(model, str(subzone)).inc()
            raise
        except ClientGone:
            state.metrics.cancelled.labels(model, str(subzone)).inc()
            return Response(status_code=499)
        state.metrics.observe(model, subzone, run)
        headers = {"X-Wait-Seconds": f"{run.wait_s:.6f}", "X-Compute-Seconds": f"{run.compute_s:.6f}",
                   "X-Workers": str(run.workers), "X-Task-Id": task_id}
        return npy_response(run.output.numpy(), headers)

    @router.post("/v1/echo", response_class=Response)
    async def echo(request: Request) -> Response:
        """The identity: the slice path (auth, limit, NPY decode and encode) without the compute."""
        check_npy_request(request)
        body = await read_body(request, limit)
        return npy_response(wire.decode(body, expect_dtype=None))


def _admin_routes(router: APIRouter, state: ExecutorState) -> None:
    @router.get("/v1/quotas")
    async def get_quotas() -> dict[str, dict[str, int]]:
        return _quotas_json(state.pool.quotas())

    @router.put("/v1/quotas")
    async def put_quotas(quotas: Annotated[dict[str, dict[int, int]], Body()]) -> dict[str, dict[str, int]]:
        new = state.pool.set_quotas(quotas)
        log.info("executor %s quotas (every owner's replaced): %s", state.settings.name, new)
        return _quotas_json(new)

    @router.get("/v1/quotas/{owner}")
    async def get_owned_quotas(owner: str) -> dict[str, dict[str, int]]:
        if owner not in QUOTA_OWNERS:
            raise InvalidInput(f"unknown quota owner {owner!r}; expected one of {', '.join(QUOTA_OWNERS)}")
        return _quotas_json(state.pool.owned_quotas().get(owner, {}))

    @router.put("/v1/quotas/{owner}")
    async def put_owned_quotas(owner: str, quotas: Annotated[dict[str, dict[int, int]], Body()]
                               ) -> dict[str, dict[str, int]]:
        new = state.pool.set_quotas(quotas, owner)
        log.info("executor %s quotas of %s: %s; in force: %s", state.settings.name, owner, quotas, new)
        return _quotas_json(new)

    @router.get("/v1/info")
    async def info() -> dict[str, Any]:
        return state.info()

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return metrics_response(state.metrics.registry)


def create_app(settings: ExecutorSettings) -> FastAPI:
    """The executor app. Weights load in the background after start-up; ready once loaded."""
    state = ExecutorState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(1)  # one intra-op thread per worker: a sub-zone's k workers use k cores
        loading = asyncio.create_task(state.load())
        try:
            yield
        finally:
            loading.cancel()
            state.pool.shutdown()

    app = base_app(f"edgesplit executor {settings.name}", settings.max_body_bytes, settings.docs, lifespan)
    instrument_http(app, state.metrics.registry)
    trace_app(app, "executor", settings)
    app.state.executor = state
    app.include_router(health_router(state.not_ready))
    api = APIRouter(dependencies=[Depends(bearer_auth(settings.token, settings.allocator_token))])
    _slice_routes(api, state)
    _admin_routes(api, state)
    app.include_router(api)
    return app
