"""Prometheus metrics of an executor, in a registry of its own (several apps may share a process).

Histograms by model and stage (= sub-zone index) are observed per slice; the sub-zones' state (busy
and queued, pool sizes, quotas) is read at scrape time by a collector. ``flops_per_thread`` is
measured: FLOPs really computed (halo included) over compute seconds times the workers used, as a
work-weighted moving average over recent slices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.executor.pool import SliceRun, ZonePool

NS = "edgesplit_executor"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_DECAY = 0.9


class _PoolCollector(Collector):
    def __init__(self, pool: ZonePool, flops_per_thread: Callable[[], float | None]) -> None:
        self.pool = pool
        self.flops_per_thread = flops_per_thread

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["model", "stage"]
        fams = {
            "busy": GaugeMetricFamily(f"{NS}_busy_workers", "Workers computing a slice now", labels=labels),
            "queued": GaugeMetricFamily(f"{NS}_queued_slices", "Slices waiting for their sub-zone",
                                        labels=labels),
            "size": GaugeMetricFamily(f"{NS}_subzone_workers", "Worker threads in the sub-zone's pool",
                                      labels=labels),
            "last": GaugeMetricFamily(f"{NS}_last_slice_workers",
                                      "Distinct worker threads that computed the sub-zone's last slice",
                                      labels=labels),
        }
        for (model, index), zone in sorted(self.pool.subzones.items()):
            key = [model, str(index)]
            fams["busy"].add_metric(key, zone.busy)
            fams["queued"].add_metric(key, zone.queued)
            fams["size"].add_metric(key, len(zone.threads))
            fams["last"].add_metric(key, zone.last_workers)
        quota = GaugeMetricFamily(f"{NS}_quota_threads", "Configured threads per sub-zone", labels=labels)
        for model, stages in sorted(self.pool.quotas().items()):
            for index, threads in sorted(stages.items()):
                quota.add_metric([model, str(index)], threads)
        owned = GaugeMetricFamily(f"{NS}_quota_owner_threads",
                                  "Threads per sub-zone as each quota owner set them (the owner's namespace)",
                                  labels=["owner", *labels])
        for owner, table in sorted(self.pool.owned_quotas().items()):
            for model, stages in sorted(table.items()):
                for index, threads in sorted(stages.items()):
                    owned.add_metric([owner, model, str(index)], threads)
        yield from fams.values()
        yield quota
        yield owned
        measured = self.flops_per_thread()
        if measured is not None:  # absent until a slice has been computed
            yield GaugeMetricFamily(f"{NS}_flops_per_thread",
                                    "Measured FLOPS per worker thread (recent slices, work-weighted)",
                                    value=measured)
        yield GaugeMetricFamily(f"{NS}_capacity_threads", "Thread capacity of the executor",
                                value=self.pool.capacity)


class ExecutorMetrics:
    """The executor's metrics; :meth:`observe` after every slice."""

    def __init__(self, pool: ZonePool) -> None:
        self.registry = r = CollectorRegistry()
        labels = ["model", "stage"]
        self.total = Histogram(f"{NS}_slice_seconds", "Time of a slice in the executor (wait + compute)",
                               labels, buckets=LATENCY_BUCKETS, registry=r)
        self.compute = Histogram(f"{NS}_slice_compute_seconds", "Compute time of a slice in its sub-zone",
                                 labels, buckets=LATENCY_BUCKETS, registry=r)
        self.wait = Histogram(f"{NS}_slice_wait_seconds", "Time a slice waited for its sub-zone (FIFO)",
                              labels, buckets=LATENCY_BUCKETS, registry=r)
        self.flops = Counter(f"{NS}_slice_flops", "FLOPs computed in slices (halo included)", ["model"],
                             registry=r)
        self.thread_s = Counter(f"{NS}_worker_seconds", "Compute seconds times workers", ["model"],
                                registry=r)
        self.ready = Gauge(f"{NS}_ready", "1 once the weights are loaded", registry=r)
        self.refused = Counter(f"{NS}_slices_refused_total", "Slices refused with 503 + Retry-After: their "
                               "sub-zone's queue was full", labels, registry=r)
        self.cancelled = Counter(f"{NS}_slices_cancelled_total", "Slices whose caller went away before "
                                 "they were done (not computed, or their answer dropped)", labels, registry=r)
        self._ema_flops = 0.0
        self._ema_thread_s = 0.0
        r.register(_PoolCollector(pool, lambda: self.flops_per_thread))

    def observe(self, model: str, stage: int, run: SliceRun) -> None:
        key = (model, str(stage))
        self.total.labels(*key).observe(run.wait_s + run.compute_s)
        self.compute.labels(*key).observe(run.compute_s)
        self.wait.labels(*key).observe(run.wait_s)
        thread_s = run.compute_s * max(1, run.workers) * run.share
        self.flops.labels(model).inc(run.flops)
        self.thread_s.labels(model).inc(thread_s)
        if run.flops > 0 and thread_s > 0:
            self._ema_flops = _DECAY * self._ema_flops + run.flops
            self._ema_thread_s = _DECAY * self._ema_thread_s + thread_s

    @property
    def flops_per_thread(self) -> float | None:
        return self._ema_flops / self._ema_thread_s if self._ema_thread_s > 0 else None
