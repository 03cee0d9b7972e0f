"""Priority order at the cloud: the cloud calls of every model go through one bounded gate.

The cloud service computes requests one at a time in arrival order, so the orchestrator decides the
order: at most ``limit`` calls are in flight, and when several wait, the most urgent task goes next in
the queue's own order (``edgesplit.queueing.QueueOrder``: lowest priority number, then the earliest
submitted; with aging, by effective priority), so priority 1 is not stuck behind a crowd of priority 5
at the last stage, and a task that aged past others in the queue keeps its place at the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from edgesplit.queueing import QueueOrder


class PriorityGate:
    """At most ``limit`` holders; waiters are let in by ``order.key(priority, submitted, arrival)``."""

    def __init__(self, limit: int, order: QueueOrder | None = None) -> None:
        if limit < 1:
            raise ValueError(f"a gate needs a limit of at least 1, got {limit}")
        self.limit = limit
        self.order = order if order is not None else QueueOrder()
        self.busy = 0
        self._waiting: list[tuple[tuple[float, float, int], asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, fut in self._waiting if not fut.done())

    @contextlib.asynccontextmanager
    async def slot(self, priority: int, submitted: float = 0.0) -> AsyncIterator[None]:
        """Hold one of the ``limit`` slots for the body of the ``async with``.

        ``priority``: 1 is the most urgent; ``submitted``: the task's submission time (Unix seconds),
        the tie-break between equal priorities (and, with aging, what the priority ages from).
        """
        await self._acquire(priority, submitted)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int, submitted: float) -> None:
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (self.order.key(priority, submitted, next(self._order)), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot just as it was cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        """Hand the slot to the most urgent live waiter, or free it."""
        while self._waiting:
            _, fut = heapq.heappop(self._waiting)
            if not fut.done():  # a cancelled waiter's future is done: skipped
                fut.set_result(None)
                return
        self.busy -= 1
