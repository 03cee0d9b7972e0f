"""Prometheus metrics of the allocator (names start with ``edgesplit_allocator_``), one registry per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgesplit.alloc.registry import resolve
from services.allocator.decide import ModelDecision

NS = "edgesplit_allocator"
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AllocatorMetrics:
    """Decisions (which allocation was served and why), plans, measurements, quota and resize calls."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.replans = Counter(f"{NS}_replans_total", "Re-planning rounds, by what triggered them",
                               ["trigger"], registry=r)
        self.served = Counter(f"{NS}_served_total", "Decisions by the allocation served: td3, exact "
                              "(chosen, or TD3's fallback), even, planner", ["model", "served"], registry=r)
        self.fallbacks = Counter(f"{NS}_td3_fallbacks_total", "Decisions where TD3's allocation was replaced "
                                 "by the exact one", ["model", "reason"], registry=r)
        self.errors = Counter(f"{NS}_decision_errors_total", "Models left without a new plan", ["model"],
                              registry=r)
        self.version = Gauge(f"{NS}_plan_version", "Version of the plan published", ["model"], registry=r)
        self.published = Counter(f"{NS}_plans_published_total", "Plans published to Redis", ["model"],
                                 registry=r)
        self.predicted = Gauge(f"{NS}_predicted_seconds", "Predicted objective of the served allocation",
                               ["model"], registry=r)
        self.td3_gap = Gauge(f"{NS}_td3_gap", "TD3's objective over the exact allocator's, minus 1",
                             ["model"], registry=r)
        self.bound_gap = Gauge(f"{NS}_bound_gap", "Served objective over the certified lower bound, minus 1",
                               ["model"], registry=r)
        self.units = Gauge(f"{NS}_plan_units", "Units (rows, kernel rows, channels) of an executor in the "
                           "current plan, all stages", ["model", "executor"], registry=r)
        self.decide_s = Histogram(f"{NS}_decision_seconds", "Time to measure, decide and publish",
                                  buckets=BUCKETS, registry=r)
        self.up = Gauge(f"{NS}_executor_up", "1 when the executor answers ready", ["executor"], registry=r)
        self.flops = Gauge(f"{NS}_executor_flops_per_thread", "Measured FLOPS per thread", ["executor"],
                           registry=r)
        self.link = Gauge(f"{NS}_link_bps", "Measured link rate to the executor, bits/s", ["executor"],
                          registry=r)
        self.queued = Gauge(f"{NS}_executor_queued_slices", "Slices waiting in the executor's sub-zones",
                            ["executor"], registry=r)
        self.quota_puts = Counter(f"{NS}_quota_updates_total", "Quota updates sent, by result",
                                  ["executor", "result"], registry=r)
        self.resizes = Counter(f"{NS}_resizes_total", "In-place pod CPU resizes, by result", ["result"],
                               registry=r)

    def count(self, d: ModelDecision, policy: str) -> None:
        """Count one model's decision: what was served, TD3's fallbacks, the predicted values."""
        self.served.labels(d.model, d.served).inc()
        if resolve(policy).learned and d.served == "exact":  # a learned policy checked and replaced
            self.fallbacks.labels(d.model, "unavailable" if d.td3_s is None else "gap").inc()
        if d.objective_s is not None:
            self.predicted.labels(d.model).set(d.objective_s)
        if d.td3_gap is not None:
            self.td3_gap.labels(d.model).set(d.td3_gap)
        if d.bound_gap is not None:
            self.bound_gap.labels(d.model).set(d.bound_gap)
