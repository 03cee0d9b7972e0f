"""The services' Redis client: one pooled asyncio client per process, set up the same way everywhere.

A command that meets a pooled connection the server closed (Redis restarted, or the connection was
dropped while idle) is sent once more on a fresh connection instead of failing: after a Redis
restart, each stale connection would otherwise fail one request (a 503 to a client although Redis is
back). Only connection errors are retried, never timeouts, so a slow command is not run twice.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError


def redis_client(url: str, socket_timeout_s: float = 5.0,
                 health_check_interval_s: int = 10, password: str | None = None) -> aioredis.Redis:
    """A pooled asyncio client of ``url`` (``redis://host:port/db``); ``password``: Redis AUTH (the
    settings' ``redis_password``, kept out of the URL so that it can come from a Secret)."""
    return aioredis.Redis.from_url(url, socket_timeout=socket_timeout_s, socket_connect_timeout=2,
                                   health_check_interval=health_check_interval_s, password=password or None,
                                   retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])
