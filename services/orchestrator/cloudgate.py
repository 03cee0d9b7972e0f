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

Waiter = tuple[tuple[float, float, int], asyncio.Future[None]]  # (the queue's order key, its future)


class PriorityGate:
    """At most ``limit`` holders, and ``reserve`` more of priority <= ``urgent`` (module docstring);
    waiters are let in by ``order.key(priority, submitted, arrival)``. Urgent and other waiters wait in
    two heaps, so that the best urgent one is at hand when only a reserved slot is free."""

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
        self._urgent: list[Waiter] = []  # waiters of priority <= urgent
        self._other: list[Waiter] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for queue in (self._urgent, self._other) for _, fut in queue if not fut.done())

    def _cap(self, priority: int) -> int:
        """How many holders a call of ``priority`` may find and still go in."""
        return self.limit + (self.reserve if priority <= self.urgent else 0)

    @staticmethod
    def _head(queue: list[Waiter]) -> Waiter | None:
        """The queue's first live waiter (a cancelled waiter's future is done: dropped)."""
        while queue and queue[0][1].done():
            heapq.heappop(queue)
        return queue[0] if queue else None

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
        urgent = priority <= self.urgent
        # an urgent call passes the waiters that are not urgent: only the reserve is its own
        ahead = self._head(self._urgent) is not None or (not urgent and self._head(self._other) is not None)
        if self.busy < self._cap(priority) and not ahead:
            self.busy += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._urgent if urgent else self._other,
                       (self.order.key(priority, submitted, next(self._order)), fut))
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
        while True:
            first_urgent, first_other = self._head(self._urgent), self._head(self._other)
            if (first_other is not None and self.busy < self.limit
                    and (first_urgent is None or first_other[0] < first_urgent[0])):
                queue = self._other  # the head by the queue's order (with aging, it may pass urgent ones)
            elif first_urgent is not None and self.busy < self.limit + self.reserve:
                queue = self._urgent  # the head, or behind a head that waits for a regular slot
            else:
                return
            _, fut = heapq.heappop(queue)
            self.busy += 1
            fut.set_result(None)
