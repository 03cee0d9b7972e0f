"""The public API's token bucket (``services.orchestrator.ratelimit``) against a real redis-server.

Requests are real Starlette ``Request`` objects built from an ASGI scope (the dependency reads only
the client address and the Authorization header). A request that finds room in this process's last
answer from the bucket goes on without waiting for Redis; the bucket still counts it, so the number
let through is exactly the burst, in sequence or all at once.
"""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from services.orchestrator.queue import TaskQueue
from services.orchestrator.ratelimit import RateLimited, rate_limiter

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


def _request(address: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/tasks", "headers": [],
                    "client": (address, 40000)})


async def _outcomes(check, address: str, n: int, at_once: bool = False) -> list[bool]:  # type: ignore[no-untyped-def]
    async def one() -> bool:
        try:
            await check(_request(address))
        except RateLimited as e:
            assert e.retry_after_s >= 1 and "rate limit" in str(e)
            return False
        return True

    if at_once:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    out = []
    for _ in range(n):
        out.append(await one())
        await asyncio.sleep(0.002)  # let the charges made beside the requests land, as between requests
    return out


async def test_exactly_the_burst_goes_through_one_by_one_and_at_once(queue: TaskQueue) -> None:
    check = rate_limiter(queue.r, queue.p, rate_per_s=0.01, burst=10, api_token=None)
    one_by_one = await _outcomes(check, "10.0.0.1", 15)
    assert one_by_one == [True] * 10 + [False] * 5
    primed = await _outcomes(check, "10.0.0.2", 1)  # this process has now seen the bucket (9 left)
    at_once = await _outcomes(check, "10.0.0.2", 25, at_once=True)
    assert primed == [True] and sum(at_once) == 9
    assert (await queue.r.hget(f"{queue.p}rl:a:10.0.0.1", "tokens")) is not None  # the bucket counted


async def test_a_bucket_drawn_elsewhere_is_asked_again_before_a_refusal(queue: TaskQueue) -> None:
    """Two replicas (two dependencies, one Redis) on one client's bucket: together they let through
    the burst and at most one request more per replica, never the burst twice."""
    a = rate_limiter(queue.r, queue.p, rate_per_s=0.01, burst=8, api_token=None)
    b = rate_limiter(queue.r, queue.p, rate_per_s=0.01, burst=8, api_token=None)
    passed = 0
    for i in range(20):
        passed += sum(await _outcomes(a if i % 2 else b, "10.0.0.3", 1))
    assert 8 <= passed <= 10, passed
