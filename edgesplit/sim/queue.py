"""The per-CNN priority queue of the simulator, and a re-armable event.

The order is the serving stack's, ``edgesplit.queueing.QueueOrder``: priority 1 is the highest; within
a level, first in first out (arrival time, then task id); with aging, a task waiting ``w`` seconds
counts as ``priority - w / aging_s``. (Until issue 16 the simulator rounded that down to whole levels
and stopped at 1, ``max(1, priority - floor(w / aging_s))``, while the Redis queue did not; the
queue's rule won, see docs/ARCHITECTURE.md.)
"""

from __future__ import annotations

from collections import deque

import simpy

from edgesplit.queueing import QueueOrder
from edgesplit.sim.records import TaskRecord


class Signal:
    """A re-armable event: ``wait()`` gives an event that the next ``fire()`` triggers."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.event = env.event()

    def wait(self) -> simpy.Event:
        return self.event

    def fire(self) -> None:
        if not self.event.triggered:
            self.event.succeed()
        self.event = self.env.event()


class PriorityQueue:
    """Waiting tasks of one CNN: best = lowest (aged priority, arrival, id). O(levels) per pop."""

    def __init__(self, env: simpy.Environment, aging_s: float) -> None:
        self.aging_s = aging_s
        self.order = QueueOrder(aging_s)
        self.levels: dict[int, deque[TaskRecord]] = {}
        self.size = 0
        self.arrived = Signal(env)

    def push(self, task: TaskRecord) -> None:
        self.levels.setdefault(task.priority, deque()).append(task)
        self.size += 1
        self.arrived.fire()

    def key(self, task: TaskRecord) -> tuple[float, float, int]:
        """``QueueOrder.key``: static, so it holds at any ``now``."""
        return self.order.key(task.priority, task.arrival_s, task.id)

    def pop(self, now: float) -> TaskRecord:
        """The best waiting task (at any ``now``: the order is static); within a level the oldest comes
        first, so only heads compete."""
        heads = [q[0] for q in self.levels.values() if q]
        best = min(heads, key=self.key)
        self.levels[best.priority].popleft()
        self.size -= 1
        return best
