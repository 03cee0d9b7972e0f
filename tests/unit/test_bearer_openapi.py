"""The bearer check is FastAPI's ``HTTPBearer``: every service's OpenAPI documents the scheme on the
routes that need the token, and not on the open health routes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

TOKEN = "unit-test-token-0123456789abcdef"


def _app(role: str) -> FastAPI:
    from services.cloud.app import create_app as cloud_app
    from services.cloud.settings import CloudSettings
    from services.executor.app import create_app as executor_app
    from services.executor.settings import ExecutorSettings
    from services.orchestrator.app import create_app as orchestrator_app
    from services.orchestrator.settings import OrchestratorSettings

    if role == "orchestrator":
        return orchestrator_app(OrchestratorSettings.model_validate(dict(api_token=TOKEN, workers=False)))
    if role == "executor":
        return executor_app(ExecutorSettings.model_validate(dict(token=TOKEN, models="digits-cnn")))
    return cloud_app(CloudSettings.model_validate(dict(token=TOKEN, models="digits-cnn")))


def _secured(schema: dict[str, Any], path: str, method: str) -> bool:
    return bool(schema["paths"][path][method].get("security"))


@pytest.mark.parametrize(("role", "protected"), [
    ("orchestrator", [("/v1/tasks", "post"), ("/v2/models/{model}/infer", "post"), ("/v2", "get")]),
    ("executor", [("/v1/quotas", "put"), ("/v1/info", "get")]),
    ("cloud", [("/v1/info", "get")]),
])
def test_protected_routes_document_the_bearer_scheme(role: str, protected: list[tuple[str, str]]) -> None:
    schema = _app(role).openapi()
    schemes = schema["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")]
    assert all(_secured(schema, path, method) for path, method in protected)
    assert not _secured(schema, "/v2/health/ready", "get")
