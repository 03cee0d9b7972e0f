"""Per-client rate limit of the public API: a token bucket in Redis (docs/API.md, "Rate limit").

Each client has a bucket of ``burst`` requests that refills at ``rate_per_s``; a request takes one, and
a request that finds it empty is refused with **429** and ``Retry-After`` (whole seconds until the next
one). The bucket lives in Redis (``{prefix}rl:{client}``, one Lua script, Redis's own clock), so every
orchestrator replica counts against the same bucket, and it expires once full again.

A client is its API token when it sent the right one (``t:`` + a hash of it), else its address
(``a:`` + the peer address; ``X-Forwarded-For`` is not trusted). The same client key scopes
``Idempotency-Key`` (:func:`client_key`), so one client's key never returns another client's task.
Health routes are not limited. When Redis does not answer the limit lets requests through (the
request then fails on Redis itself, with 503, or succeeds once it is back).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from redis.exceptions import RedisError

from edgesplit.errors import InvalidInput, QueueFull

log = logging.getLogger("edgesplit.orchestrator")

# KEYS[1] bucket; ARGV rate/s, burst. Returns {1, 0} when allowed, {0, seconds to wait} when not.
_BUCKET = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RateLimited(QueueFull):
    """A client above its request rate (HTTP 429 with Retry-After)."""


def client_key(request: Request, api_token: str | None) -> str:
    """Who sent ``request``: its API token (hashed) when it sent the right one, else its address."""
    got = request.headers.get("authorization", "")
    if api_token and hmac.compare_digest(got.encode("latin1", "replace"), f"Bearer {api_token}".encode()):
        return "t:" + hashlib.sha256(api_token.encode()).hexdigest()[:16]
    host = request.client.host if request.client is not None else "unknown"
    return "a:" + host


def scoped_idempotency_key(request: Request, api_token: str | None, key: str | None) -> str | None:
    """``Idempotency-Key`` scoped to its client (a fixed-length hash, so the stored key stays short)."""
    if key is None:
        return None
    if not 0 < len(key) <= 200:
        raise InvalidInput("Idempotency-Key must have 1 to 200 characters")
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{client_key(request, api_token)}:{digest}"


def rate_limiter(redis: Any, prefix: str, rate_per_s: float, burst: int,
                 api_token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency enforcing the bucket (module docstring); a no-op when ``rate_per_s`` is 0."""
    script = redis.register_script(_BUCKET) if rate_per_s > 0 else None
    failing = False

    async def check(request: Request) -> None:
        nonlocal failing
        if script is None:
            return
        client = client_key(request, api_token)
        try:
            allowed, wait = await script(keys=[f"{prefix}rl:{client}"], args=[rate_per_s, burst])
        except (RedisError, OSError) as e:
            if not failing:
                log.warning("rate limit not enforced while Redis does not answer: %s", e)
            failing = True
            return
        failing = False
        if not int(allowed):
            seconds = max(1, math.ceil(float(wait)))
            raise RateLimited(f"rate limit: at most {rate_per_s:g} requests per second (bursts of {burst}) "
                              f"per client; retry after {seconds} s", retry_after_s=seconds)

    return check
