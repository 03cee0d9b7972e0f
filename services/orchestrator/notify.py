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

    def __init__(self, client: aioredis.Redis, prefix: str, on_new: Callable[[str], None],
                 on_done: Callable[[str], None] | None = None) -> None:
        self.r = client
        self.p = prefix
        self.on_new = on_new
        self.on_done = on_done  # called with the id of every task that got a final status
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._final: dict[str, dict[str, Any]] = {}  # finished records handed over by notify

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
                        if self.on_done is not None:
                            self.on_done(msg["data"].decode())
                    elif channel.startswith(new):
                        self.on_new(channel[len(new) :])
            except (OSError, aioredis.RedisError) as e:
                log.warning("pub/sub connection lost (%s); reconnecting", e)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def notify(self, task_id: str, record: dict[str, Any] | None = None) -> None:
        """Wake the long-polls waiting on ``task_id`` (its record has a final status). Called for each
        ``done`` message, and directly by this process's pipelines when they end a task, with the
        finished ``record``: the waits served here then answer without the pub/sub round trip and
        without reading the task again."""
        waiters = self._waiters.get(task_id)
        if not waiters:
            return
        if record is not None:
            self._final[task_id] = record
        for event in waiters:
            event.set()

    async def wait(self, task_id: str, wait_s: float, read: Callable[[str], Awaitable[dict[str, Any]]],
                   queued: bool = False) -> dict[str, Any]:
        """``read(task_id)`` once the task has a final status, or after ``wait_s`` seconds.

        The waiter is registered before the task is read, so a result written in between still wakes
        it; the task is also re-read every second (a lost message only delays). ``queued``: the caller
        has just queued the task itself, so it cannot be final yet and the first read is skipped.
        """
        if wait_s <= 0:
            return await read(task_id)
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        deadline = time.monotonic() + wait_s
        try:
            skip = queued
            while True:
                info = self._final.get(task_id) or ({} if skip else await read(task_id))
                if info.get("status") in TERMINAL:
                    return info
                skip = False
                left = deadline - time.monotonic()
                if left <= 0:
                    return await read(task_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, 1.0))
                event.clear()
        finally:
            waiters = self._waiters.get(task_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(task_id, None)
                self._final.pop(task_id, None)
