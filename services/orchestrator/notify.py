"""Redis pub/sub for the orchestrator: ``new:{model}`` wakes that model's pipeline, ``done`` wakes the
long-polls waiting on that task. One subscriber connection per process, reconnecting when Redis
comes back; the long-polls also re-read the task every second, so a lost message only delays."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from services.orchestrator.queue import TERMINAL

log = logging.getLogger("edgesplit.orchestrator")


class Notifier:
    """Dispatches pub/sub messages: ``on_new(model)`` for submits, events for task results."""

    def __init__(self, client: aioredis.Redis, prefix: str, on_new: Callable[[str], None]) -> None:
        self.r = client
        self.p = prefix
        self.on_new = on_new
        self._waiters: dict[str, set[asyncio.Event]] = {}

    async def listen_forever(self) -> None:
        done, new = f"{self.p}done", f"{self.p}new:"
        while True:
            pubsub = self.r.pubsub()
            try:
                await pubsub.psubscribe(f"{new}*")
                await pubsub.subscribe(done)
                async for msg in pubsub.listen():
                    if msg["type"] not in ("message", "pmessage"):
                        continue
                    channel = msg["channel"].decode()
                    if channel == done:
                        self.notify(msg["data"].decode())
                    elif channel.startswith(new):
                        self.on_new(channel[len(new) :])
            except (OSError, aioredis.RedisError) as e:
                log.warning("pub/sub connection lost (%s); reconnecting", e)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def notify(self, task_id: str) -> None:
        """Wake the long-polls waiting on ``task_id`` (its record has a final status). Called for each
        ``done`` message, and directly by this process's pipelines when they end a task, which saves
        the pub/sub round trip for the waits served here."""
        for event in self._waiters.get(task_id, ()):
            event.set()

    async def wait(self, task_id: str, wait_s: float,
                   read: Callable[[str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """``read(task_id)`` once the task has a final status, or after ``wait_s`` seconds."""
        info = await read(task_id)
        if info["status"] in TERMINAL or wait_s <= 0:
            return info
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                info = await read(task_id)  # re-read after registering: no lost wake-up
                left = deadline - time.monotonic()
                if info["status"] in TERMINAL or left <= 0:
                    return info
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, 1.0))
                event.clear()
        finally:
            waiters = self._waiters.get(task_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(task_id, None)
