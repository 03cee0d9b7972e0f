"""``python -m services.cloud``: serve the cloud service with uvicorn, configured from the environment."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from services.cloud.settings import CloudSettings
from services.common.serve import serve


def main() -> None:
    def factory() -> Callable[[CloudSettings], FastAPI]:
        from services.cloud.app import create_app

        return create_app

    serve(CloudSettings, factory)


if __name__ == "__main__":
    main()
