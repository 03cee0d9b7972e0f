"""Priority order at the cloud: the cloud calls of every model go through one bounded gate.

The cloud service computes requests one at a time in arrival order, so the orchestrator decides the
order: at most ``limit`` calls are in flight, and when several wait, the most urgent task goes next in
the queue's own order (``edgesplit.queueing.QueueOrder``: lowest priority number, then the earliest
submitted; with aging, by effective priority), so priority 1 is not stuck behind a crowd of priority 5
at the last stage, and a task that aged past others in the queue keeps its place at the cloud.

``reserve`` slots beyond ``limit`` are for urgent calls only (``priority <= urgent``): with dynamic
batching and the express lane the cloud computes an urgent request on its urgent lane beside the
batches, so an urgent call need not wait until one of the ``limit`` batch calls in flight ends (a batch
of 8 whole models at the cloud, in ``dads``, took 240 ms: priority-1 p95 at 16 customers 340 ms with
the express lane, 460 without; docs/BENCHMARKS.md, run 11).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator

from edgesplit.queueing import QueueOrder


class PriorityGate:
    """At most ``limit`` holders, and ``reserve`` more of priority <= ``urgent`` (module docstring);
    waiters are let in by ``order.key(priority, submitted, arrival)``."""

    def __init__(self, limit: int, order: QueueOrder | None = None, reserve: int = 0,
                 urgent: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"a gate needs a limit of at least 1, got {limit}")
        if reserve < 0:
            raise ValueError(f"a gate's urgent reserve cannot be negative, got {reserve}")
        self.limit = limit
        self.reserve = reserve
        self.urgent = urgent
        self.order = order if order is not None else QueueOrder()
        self.busy = 0
        self._waiting: list[tuple[tuple[float, float, int], int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiting if not fut.done())

    def _cap(self, priority: int) -> int:
        """How many holders a call of ``priority`` may find and still go in."""
        return self.limit + (self.reserve if priority <= self.urgent else 0)

    @contextlib.asynccontextmanager
    async def slot(self, priority: int, submitted: float = 0.0) -> AsyncIterator[None]:
        """Hold one of the ``limit`` slots (an urgent call: or of the ``reserve``) for the body of the
        ``async with``.

        ``priority``: 1 is the most urgent; ``submitted``: the task's submission time (Unix seconds),
        the tie-break between equal priorities (and, with aging, what the priority ages from).
        """
        await self._acquire(priority, submitted)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int, submitted: float) -> None:
        # an urgent call passes the waiters that are not urgent: only the reserve is its own
        ahead = any(not fut.done() and (priority > self.urgent or p <= self.urgent)
                    for _, p, fut in self._waiting)
        if self.busy < self._cap(priority) and not ahead:
            self.busy += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (self.order.key(priority, submitted, next(self._order)), priority, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot just as it was cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        """Free a slot and let in the waiters that may go now, the most urgent first."""
        self.busy -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiting:
            _, priority, fut = self._waiting[0]
            if fut.done():  # a cancelled waiter's future is done: skipped
                heapq.heappop(self._waiting)
                continue
            if self.busy >= self._cap(priority):
                urgent = [w for w in self._waiting if not w[2].done() and w[1] <= self.urgent]
                if not urgent or self.busy >= self._cap(urgent[0][1]):
                    return
                # the head is not urgent and waits for a regular slot; an urgent waiter behind it (the
                # queue's order with aging) takes a reserved one
                first = min(urgent)
                self._waiting.remove(first)
                heapq.heapify(self._waiting)
                self.busy += 1
                first[2].set_result(None)
                continue
            heapq.heappop(self._waiting)
            self.busy += 1
            fut.set_result(None)
