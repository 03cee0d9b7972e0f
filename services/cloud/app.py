"""The cloud service's HTTP layer: NPY features in, NPY logits of ``module[spec.n_edge:]`` out.

``POST /v1/infer/{model}?start=L`` (``0 <= L <= n_edge``) takes layer L's input map instead and runs
``module[L:]``: a DADS cut inside the edge part, whose remaining convs then run here. The cloud keeps
the whole model for that (the conv weights are small next to the fully connected ones).
``?priority=P`` (1 the most urgent) orders the requests waiting for the compute thread
(``services.common.compute``); a request at or below ``urgent_priority`` runs on the urgent lane, a
compute thread of its own beside the bulk one, which is niced and SCHED_IDLE (``bulk_nice``,
``bulk_idle``), while there is bulk work beside it (``UrgentLane``); otherwise the bulk thread
computes it.

Endpoints: ``POST /v1/infer/{model}``, ``GET /v1/info``, ``GET /metrics`` (behind the bearer token when
one is configured), ``GET /v2/health/live`` and ``GET /v2/health/ready`` (open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgesplit import wire
from edgesplit.errors import InvalidInput
from edgesplit.split.pause import layer_forward
from services.cloud.settings import CloudSettings
from services.common.compute import (
    LAST,
    ComputeThread,
    ThreadPolicy,
    UrgentBatches,
    UrgentGate,
    UrgentLane,
    Waiting,
)
from services.common.httpmetrics import instrument_http
from services.common.models import Deployed, ModelHost, deployment_specs
from services.common.security import bearer_auth, read_body
from services.common.tracing import trace_app
from services.common.web import base_app, check_npy_request, health_router, metrics_response, npy_response

log = logging.getLogger("edgesplit.cloud")
NS = "edgesplit_cloud"
_UrgentItem = tuple[Deployed, np.ndarray, int]  # a waiting urgent request: the model, its features, start
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class CloudState(ModelHost):
    """Deployed models (once loaded), the single compute thread and the metrics."""

    def __init__(self, settings: CloudSettings) -> None:
        specs = deployment_specs(settings.models, settings.model_files)
        super().__init__("cloud", settings.name, specs, "all")
        self.settings = settings
        # one request at a time, the most urgent first (services.common.compute), ``threads`` torch threads
        gate = UrgentGate(settings.urgent_pause_s)  # the bulk thread pauses while urgent calls compute
        self.compute = ComputeThread(settings.threads, "es-cloud", ThreadPolicy.bulk(settings), gate)
        self.urgent = UrgentLane(settings.threads, "es-cloud-urgent", gate=gate,
                                 policy=ThreadPolicy.urgent(settings))  # ServiceSettings.urgent
        self.urgent_batches: UrgentBatches[_UrgentItem] = UrgentBatches(self._urgent_batch)
        self.registry = r = CollectorRegistry()
        self.latency = Histogram(f"{NS}_infer_seconds", "Compute time of a request's FC layers", ["model"],
                                 buckets=BUCKETS, registry=r)
        self.wait = Histogram(f"{NS}_wait_seconds", "Time a request waited for the compute thread", ["model"],
                              buckets=BUCKETS, registry=r)
        self.images = Counter(f"{NS}_images", "Images (feature maps) classified", ["model"], registry=r)
        self.queued = Gauge(f"{NS}_queued_requests", "Requests waiting or computing", registry=r)
        self.ready = Gauge(f"{NS}_ready", "1 once the weights are loaded", registry=r)

    async def load(self) -> None:
        s = self.settings
        if not await self.load_models(s.weights_dir, s.seed):
            return
        self.ready.set(1)
        log.info("cloud %s ready: models %s, %d threads", s.name, ", ".join(self.specs), s.threads)

    async def _urgent_batch(self, group: list[Waiting[_UrgentItem]]) -> list[tuple[np.ndarray, float]]:
        """Urgent requests of one model and first layer, waiting together, as one batch on the urgent
        lane (``services.common.compute.UrgentBatches``); each request's logits and when compute began."""
        deployed, _, first = group[0].item
        x = group[0].item[1] if len(group) == 1 else np.concatenate([w.item[1] for w in group])
        job = self.urgent.submit(lambda: _forward(deployed, x, first), 1)
        logits, started = await asyncio.wrap_future(job)
        return [(rows, started) for rows in UrgentBatches.rows(logits, group)]

    def info(self) -> dict[str, Any]:
        return {"name": self.settings.name, "threads": self.settings.threads,
                "ready": self.not_ready() is None,
                "models": {n: {"features": list(s.feature_shape), "num_classes": s.num_classes,
                               "weights": None if self.models is None else self.models[n].weights}
                           for n, s in self.specs.items()}}


def check_start(start: int | None, deployed: Deployed) -> int:
    """The first layer to run: ``start`` (0 to n_edge) or, when None, ``n_edge`` (the cloud part)."""
    n_edge = deployed.spec.n_edge
    if start is None:
        return n_edge
    if not 0 <= start <= n_edge:
        raise InvalidInput(f"start {start} is out of range: 0 to {n_edge} (the edge layers of "
                           f"{deployed.spec.name})")
    return start


def check_features(x: np.ndarray, deployed: Deployed, max_batch: int, start: int | None = None) -> None:
    """Features must be (N, C, H, W) = the input map of layer ``start`` (default ``n_edge``: the feature
    map, then also flattened (N, C*H*W)); N <= max_batch."""
    spec = deployed.spec
    first = spec.n_edge if start is None else start
    c, h, w = spec.shapes()[first]
    flat_ok = first == spec.n_edge and x.ndim == 2 and x.shape[1] == c * h * w
    if not (x.ndim == 4 and tuple(x.shape[1:]) == (c, h, w)) and not flat_ok:
        also = f" or [N, {math.prod((c, h, w))}]" if first == spec.n_edge else ""
        raise InvalidInput(f"features have shape {list(x.shape)}, model {spec.name} expects "
                           f"[N, {c}, {h}, {w}]{also} (the input of layer {first})")
    if not 1 <= x.shape[0] <= max_batch:
        raise InvalidInput(f"batch of {x.shape[0]} feature maps; expected 1 to {max_batch}")


def _routes(router: APIRouter, state: CloudState) -> None:
    s = state.settings

    @router.post("/v1/infer/{model}", response_class=Response)
    async def infer(model: str, request: Request, start: int | None = None,
                    priority: Annotated[int, Query(ge=-(1 << 20), le=LAST)] = LAST) -> Response:
        deployed = state.deployed(model)
        first = check_start(start, deployed)
        check_npy_request(request)
        x = wire.decode(await read_body(request, s.max_body_bytes))
        check_features(x, deployed, s.max_batch, first)
        arrived = time.perf_counter()
        state.queued.inc()
        try:
            urgent = s.urgent(priority)
            if urgent and state.urgent.wanted(not state.compute.idle):  # with the others waiting for it
                logits, started = await state.urgent_batches.run((model, first, x.shape[1:]), x.shape[0],
                                                                 (deployed, x, first))
            else:
                try:
                    logits, started = await asyncio.wrap_future(
                        state.compute.submit(lambda: _forward(deployed, x, first), priority))
                finally:
                    if not urgent:
                        state.urgent.bulk_done()
        finally:
            state.queued.dec()
        state.wait.labels(model).observe(started - arrived)
        state.latency.labels(model).observe(time.perf_counter() - started)
        state.images.labels(model).inc(x.shape[0])
        return npy_response(logits)

    @router.post("/v1/echo", response_class=Response)
    async def echo(request: Request) -> Response:
        """The identity: the infer path (auth, limit, NPY decode and encode) without the compute; the
        testbed times it to measure the cloud's per-request overhead."""
        check_npy_request(request)
        return npy_response(wire.decode(await read_body(request, s.max_body_bytes), expect_dtype=None))

    @router.get("/v1/info")
    async def info() -> dict[str, Any]:
        return state.info()

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return metrics_response(state.registry)


@torch.no_grad()
def _forward(deployed: Deployed, x: np.ndarray, start: int) -> tuple[np.ndarray, float]:
    """Logits of ``module[start:]`` (the whole model is loaded) on ``x``, layer by layer with a pause
    point before each, and within large fully connected layers (``edgesplit.split.pause``: the bulk
    thread gives way to urgent calls there); and when compute started."""
    started = time.perf_counter()
    y = torch.from_numpy(x)
    for layer in list(deployed.module)[start:]:
        y = layer_forward(layer, y)
    return y.numpy(), started


def create_app(settings: CloudSettings) -> FastAPI:
    """The cloud app. Weights load in the background after start-up; ready once loaded."""
    state = CloudState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(1)  # only the compute thread (``ComputeThread``) has a team
        loading = asyncio.create_task(state.load())
        try:
            yield
        finally:
            loading.cancel()
            state.compute.shutdown()
            state.urgent.shutdown()

    app = base_app(f"edgesplit cloud {settings.name}", settings.max_body_bytes, settings.docs, lifespan)
    instrument_http(app, state.registry)
    trace_app(app, "cloud", settings)
    app.state.cloud = state
    app.include_router(health_router(state.not_ready))
    api = APIRouter(dependencies=[Depends(bearer_auth(settings.token))])
    _routes(api, state)
    app.include_router(api)
    return app
