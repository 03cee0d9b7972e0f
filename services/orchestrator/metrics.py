"""Prometheus metrics of the orchestrator, in one registry per app (so tests can build several apps).

``pending_tasks`` is moved on every enqueue and dequeue by this process and re-read from Redis (the
per-priority counts the queue scripts maintain) on every scrape, so it stays right with several
replicas and after restarts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class Metrics:
    """The orchestrator's metrics; names start with ``edgesplit_orchestrator_``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ns = "edgesplit_orchestrator"
        self.pending = Gauge(f"{ns}_pending_tasks", "Tasks queued, by model and priority",
                             ["model", "priority"], registry=r)
        self.queue_time = Histogram(f"{ns}_queue_seconds", "Time from submit to the start of stage 0",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram(f"{ns}_e2e_seconds", "Time from submit to the result, by priority",
                             ["model", "priority"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram(f"{ns}_stage_seconds", "Duration of one pipeline stage (slices + merge)",
                               ["model", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.slice = Histogram(f"{ns}_slice_seconds", "Round trip of one slice to an executor "
                               "(transfer + compute)", ["model", "server"], buckets=LATENCY_BUCKETS,
                               registry=r)
        self.cloud = Histogram(f"{ns}_cloud_seconds", "Round trip of the features to the cloud",
                               ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.failures = Counter(f"{ns}_failures_total", "Failures by reason (a retried slice counts too)",
                                ["model", "reason"], registry=r)
        self.tasks = Counter(f"{ns}_tasks_total", "Tasks finished, by final status", ["model", "status"],
                             registry=r)
        self.rejected = Counter(f"{ns}_rejected_total", "Submits refused, by HTTP status", ["status"],
                                registry=r)
        self.executors_up = Gauge(f"{ns}_executors_up", "Executors answering", registry=r)
        self.plan_version = Gauge(f"{ns}_plan_version", "Version of the plan in use", ["model"], registry=r)
        self.stale = Counter(f"{ns}_stale_results_total", "Results of attempts that no longer held their "
                             "task (re-claimed after a lost lease, or cancelled), dropped", ["model"],
                             registry=r)
        self.loop_restarts = Counter(f"{ns}_loop_restarts_total", "Background loops restarted after an "
                                     "unexpected exception", ["loop"], registry=r)
        self.batch_size = Histogram(f"{ns}_batch_size", "Tasks run together as one batch (dynamic batching; "
                                    "1 with batching off)", ["model"],
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256), registry=r)
        self.queue_delay = Histogram(f"{ns}_queue_delay_seconds", "Time from submit to the claim, by "
                                     "priority", ["model", "priority"], buckets=LATENCY_BUCKETS, registry=r)
        self.orphans = Counter(f"{ns}_orphans_total", "Queued ids found without their task record, dropped "
                               "by a claim", ["model"], registry=r)
        self.claimed_at_submit = Counter(f"{ns}_claimed_at_submit_total", "Tasks claimed by their own submit "
                                         "and started at once (none queued before them)", ["model"],
                                         registry=r)

    def set_pending(self, model: str, counts: dict[int, int], known: set[int]) -> None:
        """Set the pending gauge from Redis counts; priorities seen before and now empty go to 0."""
        for prio in known | set(counts):
            self.pending.labels(model, str(prio)).set(counts.get(prio, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
