"""``create_app(settings)``: the orchestrator app. Nothing runs at import; the lifespan starts the
service (models, Redis, pipelines) and stops it, giving tasks in flight back to their queue."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from services.common.httpmetrics import instrument_http
from services.common.tracing import trace_app
from services.common.web import base_app
from services.orchestrator.api import open_router, public_router
from services.orchestrator.ratelimit import rate_limiter
from services.orchestrator.service import Orchestrator
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.v2 import V2Api, v2_router


def create_app(settings: OrchestratorSettings) -> FastAPI:
    """The orchestrator app (OpenAPI at ``/docs`` and ``/openapi.json``)."""
    orch = Orchestrator(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await orch.start()
        grpc_server = None
        if settings.grpc_port is not None:  # the V2 protocol over gRPC too
            from services.orchestrator.v2grpc import start_server

            grpc_server = await start_server(V2Api(orch), settings.host, settings.grpc_port,
                                             settings.api_token, settings.max_body_bytes)
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(1.0)
            await orch.stop()

    app = base_app("edgesplit orchestrator", settings.max_body_bytes, settings.docs, lifespan)
    instrument_http(app, orch.metrics.registry)
    trace_app(app, "orchestrator", settings)
    app.state.orchestrator = orch
    app.include_router(open_router(orch))
    limit = Depends(rate_limiter(orch.redis, settings.prefix, settings.rate_per_s, settings.rate_burst,
                                 settings.api_token))  # per client, health routes excepted
    app.include_router(public_router(orch), dependencies=[limit])
    app.include_router(v2_router(orch), dependencies=[limit])
    return app
