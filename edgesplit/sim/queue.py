"""The per-CNN priority queue of the simulator, and a re-armable event.

Priority 1 is the highest; within a level, first in first out (arrival time, then task id). With
aging, a task waiting ``w`` seconds counts as ``max(1, priority - floor(w / aging_s))``.
"""

from __future__ import annotations

import math
from collections import deque

import simpy

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
        self.levels: dict[int, deque[TaskRecord]] = {}
        self.size = 0
        self.arrived = Signal(env)

    def push(self, task: TaskRecord) -> None:
        self.levels.setdefault(task.priority, deque()).append(task)
        self.size += 1
        self.arrived.fire()

    def key(self, task: TaskRecord, now: float) -> tuple[float, float, int]:
        prio = float(task.priority)
        if self.aging_s > 0:
            prio = max(1.0, prio - math.floor((now - task.arrival_s) / self.aging_s + 1e-9))
        return (prio, task.arrival_s, task.id)

    def pop(self, now: float) -> TaskRecord:
        """The best waiting task now; within a level the oldest ages most, so only heads compete."""
        heads = [q[0] for q in self.levels.values() if q]
        best = min(heads, key=lambda t: self.key(t, now))
        self.levels[best.priority].popleft()
        self.size -= 1
        return best
