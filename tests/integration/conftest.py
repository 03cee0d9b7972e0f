"""Fixtures starting real service processes on free loopback ports (reusable by every integration test).

* ``executors``: two ``python -m services.executor`` processes (session-wide), 4 threads of capacity
  each, token ``TOKEN``, bodies up to ``MAX_BODY`` bytes, models ``digits-cnn`` and ``alexnet-paper``;
* ``cloud``: one ``python -m services.cloud`` process (session-wide), same token and models;
* ``token``: the bearer token they require;
* ``spawn``: start extra services for one test (``spawn.executor(name, **settings)``,
  ``spawn.cloud(...)``), stopped when the test ends.

Processes log to files under the session's temporary directory; a failed start shows the log.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.orchestrator.queue import TaskQueue
from tooling.proc import ServiceProcess, Spawner, start_cloud, start_executor, wait_ready

TOKEN = "integration-test-token-0123456789"
MODELS = "digits-cnn,alexnet-paper"
MAX_BODY = 4 * 1024 * 1024
QUEUE_REDIS_URL = "redis://127.0.0.1:6379/0"
EXECUTOR_THREADS = 4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def queue() -> AsyncIterator[TaskQueue]:
    """A task queue under a fresh prefix of the shared redis-server (2 attempts), purged after."""
    client = aioredis.Redis.from_url(QUEUE_REDIS_URL)
    q = TaskQueue(client, prefix=f"test:{uuid.uuid4().hex[:8]}:", result_ttl_s=60, max_attempts=2)
    yield q
    await q.purge()
    await client.aclose()


@pytest.fixture(scope="session")
def token() -> str:
    """The bearer token of the session's services (``TOKEN``)."""
    return TOKEN


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


def _start_all(starters: list[ServiceProcess]) -> list[ServiceProcess]:
    """Wait for processes started together (they load in parallel); stop all if one fails."""
    try:
        with ThreadPoolExecutor(len(starters)) as pool:
            list(pool.map(wait_ready, starters))
    except Exception:
        for svc in starters:
            svc.stop()
        raise
    return starters


@pytest.fixture(scope="session")
def executors(service_logs: Path) -> Iterator[list[ServiceProcess]]:
    """Two real executors, ready; stopped at the end of the session."""
    procs = [start_executor(f"executor-{i}", service_logs, wait=False, token=TOKEN, models=MODELS,
                            threads=EXECUTOR_THREADS, max_body_bytes=MAX_BODY, seed=0) for i in range(2)]
    yield _start_all(procs)
    for svc in procs:
        svc.stop()


@pytest.fixture(scope="session")
def cloud(service_logs: Path) -> Iterator[ServiceProcess]:
    """One real cloud service, ready; stopped at the end of the session."""
    svc = start_cloud("cloud", service_logs, wait=False, token=TOKEN, models=MODELS, threads=1,
                      max_body_bytes=MAX_BODY, seed=0)
    yield _start_all([svc])[0]
    svc.stop()


@pytest.fixture
def spawn(service_logs: Path) -> Iterator[Spawner]:
    spawner = Spawner(service_logs)
    yield spawner
    spawner.stop_all()
