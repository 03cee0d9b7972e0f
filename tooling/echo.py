"""A bare FastAPI echo of an NPY body: the baseline of ``edgesplit bench rpc``.

Serve with ``uvicorn --factory tooling.echo:create_app``. It does only what any endpoint must
(read the body, send it back), so an executor's extra cost per request shows against it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from edgesplit import wire


def create_app() -> FastAPI:
    """``POST /echo`` returns the request body; ``GET /v2/health/ready`` answers 200."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type=wire.CONTENT_TYPE)

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app
