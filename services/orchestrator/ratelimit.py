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

A request does not always wait for the bucket: when this process's last answer from it, refilled
since and less the charges still on their way, leaves room for this request and one more, the request
goes on and the bucket is charged beside it (one Redis round trip off every request's latency, about
0.45 ms on the idle stack). A refusal is always the bucket's own answer. Only other replicas drawing
on the same bucket within one round trip can let a client past its limit, by at most a request each.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from redis.exceptions import RedisError

from edgesplit.errors import InvalidInput, QueueFull

log = logging.getLogger("edgesplit.orchestrator")

# KEYS[1] bucket; ARGV rate/s, burst. Returns {1, 0, tokens left} when allowed, {0, seconds to wait,
# tokens left} when not.
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
return {allowed, tostring(wait), tostring(tokens)}
"""


MAX_CLIENTS_SEEN = 10_000


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


class _Buckets:
    """The buckets as this process sees them (module docstring): the last answer per client, the
    charges on their way, and the requests let through before their charge was answered."""

    def __init__(self, script: Any, prefix: str, rate_per_s: float, burst: int,
                 api_token: str | None) -> None:
        self.script = script
        self.prefix = prefix
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.api_token = api_token
        self.failing = False
        self.seen: dict[str, tuple[float, float]] = {}  # client -> (tokens left, monotonic s) at the answer
        self.charging: dict[str, int] = {}  # client -> charges sent and not answered yet
        self.beside: dict[str, set[asyncio.Task[Any]]] = {}  # client -> charges of requests let through

    def room(self, client: str) -> float:
        """Tokens the bucket holds now by the last answer, less the charges not answered yet."""
        last = self.seen.get(client)
        if last is None:
            return 0.0
        tokens, at = last
        refilled = min(float(self.burst), tokens + (time.monotonic() - at) * self.rate_per_s)
        return refilled - self.charging.get(client, 0)

    async def charge(self, client: str) -> tuple[bool, float] | None:
        """Take a token (``charging`` counts this call already): (allowed, seconds to wait), or None
        when Redis does not answer."""
        try:
            allowed, wait, left = await self.script(keys=[f"{self.prefix}rl:{client}"],
                                                    args=[self.rate_per_s, self.burst])
        except (RedisError, OSError) as e:
            if not self.failing:
                log.warning("rate limit not enforced while Redis does not answer: %s", e)
            self.failing = True
            return None
        finally:
            self.charging[client] -= 1
            if not self.charging[client]:
                del self.charging[client]
        self.failing = False
        if len(self.seen) >= MAX_CLIENTS_SEEN:
            self.seen.clear()  # a client unseen for a moment just waits for its bucket once
        self.seen[client] = (float(left), time.monotonic())
        return bool(int(allowed)), float(wait)

    def _landed(self, client: str, task: asyncio.Task[Any]) -> None:
        mine = self.beside.get(client)
        if mine is not None:
            mine.discard(task)
            if not mine:
                del self.beside[client]

    async def check(self, request: Request) -> None:
        """The FastAPI dependency: RateLimited (429) when the client's bucket is empty."""
        client = client_key(request, self.api_token)
        enough = self.room(client) >= 2.0  # this request and one more: it goes on, charged beside it
        self.charging[client] = self.charging.get(client, 0) + 1
        if enough:
            task = asyncio.create_task(self.charge(client))
            self.beside.setdefault(client, set()).add(task)  # (the loop holds only weak references)
            task.add_done_callback(functools.partial(self._landed, client))
            return
        if self.beside.get(client):  # the bucket must have counted those before it answers this one
            await asyncio.wait(list(self.beside[client]))
        answer = await self.charge(client)
        if answer is None or answer[0]:
            return
        seconds = max(1, math.ceil(answer[1]))
        raise RateLimited(f"rate limit: at most {self.rate_per_s:g} requests per second (bursts of "
                          f"{self.burst}) per client; retry after {seconds} s", retry_after_s=seconds)


def rate_limiter(redis: Any, prefix: str, rate_per_s: float, burst: int,
                 api_token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency enforcing the bucket (module docstring); a no-op when ``rate_per_s`` is 0."""
    if rate_per_s <= 0:
        async def unlimited(request: Request) -> None:
            return None

        return unlimited
    return _Buckets(redis.register_script(_BUCKET), prefix, rate_per_s, burst, api_token).check
