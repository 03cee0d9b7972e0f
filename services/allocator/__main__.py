"""``python -m services.allocator``: serve the allocator with uvicorn, configured from the environment."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from services.allocator.settings import AllocatorSettings
from services.common.serve import serve


def main() -> None:
    def factory() -> Callable[[AllocatorSettings], FastAPI]:
        from services.allocator.app import create_app

        return lambda settings: create_app(settings)

    serve(AllocatorSettings, factory)


if __name__ == "__main__":
    main()
