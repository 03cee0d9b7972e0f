"""``python -m services.orchestrator``: serve the orchestrator with uvicorn, configured from the env."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from services.common.serve import serve
from services.orchestrator.settings import OrchestratorSettings


def main() -> None:
    def factory() -> Callable[[OrchestratorSettings], FastAPI]:
        from services.orchestrator.app import create_app  # torch loads only once the settings are valid

        return create_app

    serve(OrchestratorSettings, factory)


if __name__ == "__main__":
    main()
