"""What the simulator records: tasks, per-stage times, the cloud part, and summaries of a run.

All times are simulated seconds from the start of the run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgesplit.errors import InvalidPlan


@dataclass(frozen=True)
class TaskSpec:
    """One inference task: its CNN, its priority (1 is the highest) and its arrival time (s)."""

    id: int
    model: str
    priority: int
    arrival_s: float


def make_tasks(model: str, n: int, *, rate_per_s: float = 0.0, priorities: int | Sequence[int] = 1,
               seed: int = 0, first_id: int = 0) -> list[TaskSpec]:
    """``n`` tasks of ``model``: all at t=0 (rate 0) or Poisson arrivals at ``rate_per_s``.

    ``priorities``: a number of levels (each task draws one uniformly, seeded) or one per task.
    """
    rng = np.random.default_rng([seed, 0])
    if rate_per_s > 0:
        arrivals = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
        arrivals -= arrivals[0]
    else:
        arrivals = np.zeros(n)
    if isinstance(priorities, int):
        prios = rng.integers(1, priorities + 1, size=n).tolist()
    else:
        prios = list(priorities)
        if len(prios) != n:
            raise InvalidPlan(f"{len(prios)} priorities given for {n} tasks")
    return [TaskSpec(first_id + i, model, int(prios[i]), float(arrivals[i])) for i in range(n)]


@dataclass
class StageRecord:
    """One stage of one task. ``compute_s``/``transfer_s``/``overhead_s``/``link_wait_s`` are those of
    the server that finished last (the one that set the stage's end)."""

    stage: int
    label: str
    ready_s: float  # its input was ready (previous stage merged, or admission)
    start_s: float  # its sub-zone was free and it started
    end_s: float = 0.0
    compute_s: float = 0.0
    transfer_s: float = 0.0
    overhead_s: float = 0.0
    link_wait_s: float = 0.0
    server: int = -1


@dataclass
class CloudRecord:
    """The cloud part: uplink (queued from ``ready_s``, on the link from ``start_s``), then FC."""

    ready_s: float
    start_s: float = 0.0
    transfer_end_s: float = 0.0
    end_s: float = 0.0
    transfer_s: float = 0.0
    compute_s: float = 0.0
    overhead_s: float = 0.0


@dataclass
class TaskRecord:
    """A task from arrival to its final result. ``admitted_s``: left the queue (started stage 0)."""

    id: int
    model: str
    priority: int
    arrival_s: float
    admitted_s: float = 0.0
    end_s: float = 0.0
    stages: list[StageRecord] = field(default_factory=list)
    cloud: CloudRecord | None = None
    server: int = -1  # the server of a replicated (No Split / DADS) task

    @property
    def latency_s(self) -> float:
        """Arrival to result. Seconds."""
        return self.end_s - self.arrival_s

    @property
    def queue_wait_s(self) -> float:
        return self.admitted_s - self.arrival_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_s"] = self.latency_s
        d["queue_wait_s"] = self.queue_wait_s
        return d


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class SimResult:
    """The records of one run, ordered by task id."""

    tasks: list[TaskRecord]

    def of(self, model: str | None = None) -> list[TaskRecord]:
        return [t for t in self.tasks if model is None or t.model == model]

    def makespan_s(self, model: str | None = None) -> float:
        """First arrival to last result: the paper's "total latency" of a batch of tasks. Seconds."""
        ts = self.of(model)
        return max(t.end_s for t in ts) - min(t.arrival_s for t in ts)

    def throughput_per_s(self, model: str | None = None) -> float:
        """Tasks completed per second: n / makespan. With a large batch submitted at once this is the
        throughput at saturation, set by the slowest resource (a stage, a link or the thread pool)."""
        span = self.makespan_s(model)
        return len(self.of(model)) / span if span > 0 else 0.0

    def edge_throughput_per_s(self, model: str | None = None) -> float:
        """Tasks leaving the edge per second: n / (last edge end - first arrival); the edge pipeline's
        own rate, without the uplink to the cloud."""
        ts = self.of(model)
        span = max(t.stages[-1].end_s for t in ts) - min(t.arrival_s for t in ts)
        return len(ts) / span if span > 0 else 0.0

    def stage_means(self, model: str | None = None) -> list[dict[str, float | str]]:
        """Per stage: mean busy time, compute, transfer, overhead, link wait and wait for the zone."""
        ts = self.of(model)
        out: list[dict[str, float | str]] = []
        for i in range(max((len(t.stages) for t in ts), default=0)):
            recs = [t.stages[i] for t in ts if len(t.stages) > i]
            out.append({
                "stage": recs[0].label,
                "busy_ms": 1e3 * statistics.fmean(r.end_s - r.start_s for r in recs),
                "compute_ms": 1e3 * statistics.fmean(r.compute_s for r in recs),
                "transfer_ms": 1e3 * statistics.fmean(r.transfer_s for r in recs),
                "overhead_ms": 1e3 * statistics.fmean(r.overhead_s for r in recs),
                "link_wait_ms": 1e3 * statistics.fmean(r.link_wait_s for r in recs),
                "zone_wait_ms": 1e3 * statistics.fmean(r.start_s - r.ready_s for r in recs),
            })
        return out

    def cloud_means(self, model: str | None = None) -> dict[str, float]:
        recs = [t.cloud for t in self.of(model) if t.cloud is not None]
        if not recs:
            return {}
        return {"uplink_wait_ms": 1e3 * statistics.fmean(r.start_s - r.ready_s for r in recs),
                "transfer_ms": 1e3 * statistics.fmean(r.transfer_s for r in recs),
                "compute_ms": 1e3 * statistics.fmean(r.compute_s for r in recs),
                "overhead_ms": 1e3 * statistics.fmean(r.overhead_s for r in recs)}

    def summary(self, model: str | None = None) -> dict[str, Any]:
        """Latency statistics (ms), makespan (ms), throughput (tasks/s) and the mean breakdown."""
        ts = self.of(model)
        lat = [1e3 * t.latency_s for t in ts]
        by_prio: dict[int, list[float]] = {}
        for t in ts:
            by_prio.setdefault(t.priority, []).append(1e3 * t.latency_s)
        return {
            "tasks": len(ts),
            "latency_ms": {"mean": statistics.fmean(lat), "p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95),
                           "max": max(lat), "first": 1e3 * min(ts, key=lambda t: t.end_s).latency_s},
            "queue_wait_ms_mean": 1e3 * statistics.fmean(t.queue_wait_s for t in ts),
            "makespan_ms": 1e3 * self.makespan_s(model),
            "throughput_per_s": self.throughput_per_s(model),
            "edge_throughput_per_s": self.edge_throughput_per_s(model),
            "latency_ms_by_priority": {p: statistics.fmean(v) for p, v in sorted(by_prio.items())},
            "stages": self.stage_means(model),
            "cloud": self.cloud_means(model),
        }
