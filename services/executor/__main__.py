"""``python -m services.executor``: serve the executor with uvicorn, configured from the environment."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from services.common.serve import serve
from services.executor.settings import ExecutorSettings


def main() -> None:
    def factory() -> Callable[[ExecutorSettings], FastAPI]:
        from services.executor.app import create_app

        return create_app

    serve(ExecutorSettings, factory)


if __name__ == "__main__":
    main()
