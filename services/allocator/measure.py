"""What the allocator measures: each executor's speed, load and health, and each link's rate.

* Executors: ``GET /v2/health/ready`` (health) and ``GET /metrics`` (Prometheus text):
  ``edgesplit_executor_flops_per_thread`` (FLOPs computed over compute seconds times workers, recent
  slices), ``edgesplit_executor_capacity_threads``, ``edgesplit_executor_queued_slices`` and
  ``edgesplit_executor_busy_workers`` (summed over sub-zones), ``edgesplit_executor_quota_threads``
  (the quotas in force) and ``edgesplit_executor_quota_owner_threads`` (each owner's namespace: the
  allocator's own, ``QUOTA_ALLOCATOR``, is its sample's ``quotas``, so a restarted executor or a
  plain ``PUT /v1/quotas``, which empties it, is noticed and put right).
* Slices as the orchestrator saw them: it records every slice in the Redis stream
  ``{prefix}xfer:{executor name}`` with the fields ``bytes`` (sent plus received), ``transfer_s``
  (the round trip minus the executor's wait and compute, seconds) and, when it has them,
  ``compute_s``, ``flops`` (FLOPs of the slice) and ``workers``. The newest ``window`` records of an
  executor are fitted by least squares:

  - ``transfer_s = overhead_s + 8 * bytes / link_bps`` (eq. 3 plus a per-request cost); with too few
    records or sizes too alike for a slope, the rate is the total bits over the total seconds;
  - ``compute_s = compute_overhead_s + flops / (workers * flops_per_thread)`` (eq. 1 plus a
    per-slice cost). This beats the executor's own FLOPS figure for small slices, where a fixed cost
    per slice makes an executor given few rows look slower than one given many.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from edgesplit.errors import Unavailable
from services.common.channels import QUOTA_ALLOCATOR, xfer_stream
from services.common.http import HttpPool

NS = "edgesplit_executor"
MIN_FIT_SAMPLES = 8
MIN_SIZE_SPREAD = 1.5  # largest / smallest transfer for a slope to mean anything
MIN_R2 = 0.5  # a line explaining less than half the variance is noise: no fit


@dataclass(frozen=True)
class ExecutorSample:
    """One executor as last measured. ``up``: ready and its metrics readable."""

    name: str
    url: str | None
    up: bool
    flops_per_thread: float | None = None
    capacity: int | None = None
    queued: int = 0
    busy: int = 0
    quotas: dict[str, dict[int, int]] = field(default_factory=dict)  # the allocator's namespace
    error: str | None = None
    compute: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    workers: dict[tuple[str, int], int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "up": self.up, "flops_per_thread": self.flops_per_thread,
                "capacity": self.capacity, "queued": self.queued, "busy": self.busy,
                "quotas": {m: {str(k): v for k, v in q.items()} for m, q in self.quotas.items()},
                "error": self.error}


@dataclass(frozen=True)
class SliceStats:
    """What an executor's slice records say (module docstring): link rate (bits/s) and per-request
    overhead (s), and, when the records carry compute times, FLOPS per thread and per-slice compute
    overhead (s); ``samples`` records were used."""

    link_bps: float | None
    overhead_s: float | None
    samples: int
    flops_per_thread: float | None = None
    compute_overhead_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"link_bps": self.link_bps, "overhead_s": self.overhead_s, "samples": self.samples,
                "flops_per_thread": self.flops_per_thread, "compute_overhead_s": self.compute_overhead_s}


NO_STATS = SliceStats(None, None, 0)


def parse_executor_metrics(text: str) -> dict[str, Any]:
    """The values the allocator uses from an executor's Prometheus text (module docstring)."""
    out: dict[str, Any] = {"flops_per_thread": None, "capacity": None, "queued": 0, "busy": 0, "quotas": {},
                           "owned": {}, "compute": {}, "workers": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{NS}_flops_per_thread" and s.value > 0 and math.isfinite(s.value):
                out["flops_per_thread"] = float(s.value)
            elif s.name == f"{NS}_capacity_threads":
                out["capacity"] = int(s.value)
            elif s.name == f"{NS}_queued_slices":
                out["queued"] += int(s.value)
            elif s.name == f"{NS}_busy_workers":
                out["busy"] += int(s.value)
            elif s.name == f"{NS}_quota_threads":
                out["quotas"].setdefault(s.labels["model"], {})[int(s.labels["stage"])] = int(s.value)
            elif s.name == f"{NS}_quota_owner_threads":
                table = out["owned"].setdefault(s.labels["owner"], {})
                table.setdefault(s.labels["model"], {})[int(s.labels["stage"])] = int(s.value)
            elif s.name == f"{NS}_last_slice_workers":
                out["workers"][(s.labels["model"], int(s.labels["stage"]))] = int(s.value)
            elif s.name in (f"{NS}_slice_compute_seconds_count", f"{NS}_slice_compute_seconds_sum"):
                key = (s.labels["model"], int(s.labels["stage"]))
                count, total = out["compute"].get(key, (0.0, 0.0))
                out["compute"][key] = (s.value, total) if s.name.endswith("_count") else (count, s.value)
    return out


def fit_line(points: Sequence[tuple[float, float]], min_r2: float = MIN_R2) -> tuple[float, float] | None:
    """Least-squares ``y = intercept + slope * x`` (``numpy.polyfit``) as (slope, intercept); None when
    the points do not determine a line with a positive slope and a nonnegative intercept: too few, x
    too alike, or y mostly noise (coefficient of determination below ``min_r2``)."""
    pts = np.array([(x, y) for x, y in points if x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)],
                   dtype=np.float64).reshape(-1, 2)
    if len(pts) < MIN_FIT_SAMPLES:
        return None
    xs, ys = pts[:, 0], pts[:, 1]
    if xs.max() < MIN_SIZE_SPREAD * xs.min():
        return None
    slope, intercept = (float(v) for v in np.polyfit(xs, ys, 1))
    if slope * (xs.max() - xs.min()) <= 1e-9 * float(ys.mean()):  # y flat across x: a slope of rounding noise
        return None
    total = float(np.sum((ys - ys.mean()) ** 2))
    residual = float(np.sum((ys - intercept - slope * xs) ** 2))
    if slope <= 0 or intercept < 0 or (total > 0 and 1.0 - residual / total < min_r2):
        return None
    return slope, intercept


RECENT = 5  # newest slice records that may show a new regime on their own
SHIFT = 0.3  # relative change of their speed that counts as one


def _work(records: Sequence[Mapping[str, float]]) -> list[tuple[float, float]]:
    """(FLOPs per worker, compute seconds) of the records that have both, in their order."""
    return [(r["flops"] / max(1.0, r.get("workers", 1.0)), r["compute_s"]) for r in records
            if r.get("flops", 0) > 0 and r.get("compute_s", 0) > 0]


def current_regime(work: Sequence[tuple[float, float]], recent: int = RECENT,
                   shift: float = SHIFT) -> Sequence[tuple[float, float]]:
    """The (FLOPs per worker, seconds) points, newest first, of the executor's current regime: all of
    them, or only the newest ``recent`` when they took, in the median, more than ``shift`` longer or
    shorter than the older points' fit predicts (a host slowed by a noisy neighbour or a resize, or
    sped up). Without it a window of 64 records needs dozens of tasks to forget the old speed (18 s on
    the testbed at one allocator period a second)."""
    if len(work) < 2 * recent:
        return work
    fit = compute_estimate(work[recent:])
    if fit is None:
        return work
    speed, overhead = fit
    ratios = [y / (overhead + x / speed) for x, y in work[:recent] if overhead + x / speed > 0]
    changed = bool(ratios) and relative_change(1.0, statistics.median(ratios)) > shift
    return work[:recent] if changed else work


def fit_slices(records: Sequence[Mapping[str, float]]) -> SliceStats:
    """Link and compute estimates from slice records (module docstring), newest first; the compute
    estimate from the current regime only (``current_regime``)."""
    xfer = [(r["bytes"], r["transfer_s"]) for r in records
            if r.get("bytes", 0) > 0 and r.get("transfer_s", 0) > 0]
    if not xfer:
        return NO_STATS
    line = fit_line(xfer)
    link_bps, overhead = (8.0 / line[0], line[1]) if line is not None else (None, None)
    compute = compute_estimate(current_regime(_work(records)))
    if compute is None:
        return SliceStats(link_bps, overhead, len(xfer))
    return SliceStats(link_bps, overhead, len(xfer), compute[0], compute[1])


def compute_estimate(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(FLOPS per thread, per-slice overhead s) from (FLOPs per worker, compute seconds) points: the
    line of eq. (1) plus a fixed cost when the points determine one, else the total FLOPs over the
    total seconds (no overhead: a slow server and a server with a large fixed cost look alike then)."""
    if not points:
        return None
    line = fit_line(points)
    if line is not None:
        return 1.0 / line[0], line[1]
    seconds = sum(y for _, y in points)
    return (sum(x for x, _ in points) / seconds, 0.0) if seconds > 0 else None


def relative_change(old: float | None, new: float | None) -> float:
    """|new - old| / old; 0 when either is unknown."""
    if old is None or new is None or old <= 0:
        return 0.0
    return abs(new - old) / old


class ComputeFit:
    """FLOPS per thread and per-slice compute overhead of each executor from its own metrics.

    Between two measurements, the executor's ``slice_compute_seconds`` count and sum of a (model,
    stage) give the mean compute time of the slices it ran there; the plan in force says what those
    slices were, so their FLOPs per worker are known (``work``). The newest ``window`` such points of
    an executor are fitted to ``compute_s = overhead + flops_per_worker / flops_per_thread`` (eq. 1
    plus a fixed cost per slice); a fit without a positive slope and a nonnegative intercept gives
    ``sum(flops) / sum(seconds)`` and no overhead. A counter going back (a restarted executor)
    forgets its points; so does a new speed regime (``current_regime``: the points of one measurement,
    at least two, off the older ones' fit by more than ``SHIFT`` in the median), so a host slowed by a
    noisy neighbour or a smaller quota is seen at the next measurement instead of after the window
    has turned over.
    """

    def __init__(self, window: int = 24) -> None:
        self.window = window
        self._last: dict[str, dict[tuple[str, int], tuple[float, float]]] = {}
        self._points: dict[str, collections.deque[tuple[float, float]]] = {}

    def update(self, name: str, counters: Mapping[tuple[str, int], tuple[float, float]],
               work: Mapping[tuple[str, int], float] | None) -> bool:
        """Add the points of one executor since its last update; ``work`` None skips the interval
        (the plan just changed: the slices of the interval are not known). True when its counters
        went back (a restarted executor: its points are forgotten)."""
        last = self._last.get(name)
        self._last[name] = dict(counters)
        points = self._points.setdefault(name, collections.deque(maxlen=self.window))
        if last is None:
            return False
        if any(counters.get(k, (0.0, 0.0))[0] < v[0] for k, v in last.items()):
            points.clear()
            return True
        added = 0
        for key, (count, total) in counters.items():
            n = count - last.get(key, (0.0, 0.0))[0]
            flops = (work or {}).get(key)
            if work is None or n <= 0 or not flops:
                continue
            points.append((flops, (total - last.get(key, (0.0, 0.0))[1]) / n))
            added += 1
        if (added >= 2 and len(points) - added >= MIN_FIT_SAMPLES
                and len(current_regime(list(points)[::-1], recent=added)) == added):
            kept = list(points)[-added:]  # a new speed regime: the older points describe another host
            points.clear()
            points.extend(kept)
        return False

    def estimate(self, name: str) -> tuple[float, float] | None:
        """(FLOPS per thread, per-slice overhead s) of one executor, or None without points."""
        return compute_estimate(list(self._points.get(name, ())))

    def forget(self, name: str) -> None:
        self._points.pop(name, None)


class Measurer:
    """Reads the executors and the transfer streams (one shared HTTP client, one Redis client)."""

    def __init__(self, http: HttpPool, redis: aioredis.Redis, prefix: str, token: str | None,
                 timeout_s: float = 2.0, window: int = 64) -> None:
        self.http = http
        self.redis = redis
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.window = window
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def executor(self, name: str, url: str | None) -> ExecutorSample:
        """Health and metrics of one executor; ``up`` False (with the reason) when either fails."""
        if url is None:
            return ExecutorSample(name, url, False, error="no address")
        base = url.rstrip("/")
        try:
            ready = await self.http.fetch("GET", f"{base}/v2/health/ready", timeout_s=self.timeout_s)
            if ready.status != 200:
                return ExecutorSample(name, url, False, error=f"not ready: HTTP {ready.status}")
            resp = await self.http.fetch("GET", f"{base}/metrics", headers=self._auth,
                                         timeout_s=self.timeout_s)
        except Unavailable as e:
            return ExecutorSample(name, url, False, error=str(e))
        if resp.status != 200:
            return ExecutorSample(name, url, False, error=f"/metrics answered HTTP {resp.status}")
        try:
            m = parse_executor_metrics(resp.body.decode())
        except ValueError as e:
            return ExecutorSample(name, url, False, error=f"unreadable /metrics: {e}")
        return ExecutorSample(name, url, True, m["flops_per_thread"], m["capacity"], m["queued"], m["busy"],
                              m["owned"].get(QUOTA_ALLOCATOR, {}), compute=m["compute"], workers=m["workers"])

    async def slices(self, name: str, since: float | None = None) -> SliceStats:
        """What the newest slice records of one executor say, those before ``since`` (Unix seconds: the
        executor restarted then) left out; NO_STATS when there are none."""
        key = xfer_stream(self.prefix, name)
        oldest = "-" if since is None else str(int(since * 1000))
        try:
            entries = await self.redis.xrevrange(key, max="+", min=oldest, count=self.window)
        except (aioredis.RedisError, OSError):
            return NO_STATS
        return fit_slices(_records(entries or []))

    async def executors(self, executors: Mapping[str, str | None]) -> dict[str, ExecutorSample]:
        """Every executor (by name -> url), concurrently."""
        names = list(executors)
        samples = await asyncio.gather(*(self.executor(n, executors[n]) for n in names))
        return dict(zip(names, samples, strict=True))

    async def links(self, names: Sequence[str], since: Mapping[str, float]) -> dict[str, SliceStats]:
        """The slice records of every executor (from ``since[name]`` on)."""
        stats = await asyncio.gather(*(self.slices(n, since.get(n)) for n in names))
        return dict(zip(names, stats, strict=True))


def _records(entries: Sequence[tuple[Any, Any]]) -> list[dict[str, float]]:
    out = []
    for _, fields in entries:
        record = {}
        for k, v in (fields or {}).items():
            with contextlib.suppress(ValueError, TypeError):
                record[k.decode() if isinstance(k, bytes) else str(k)] = float(v)
        out.append(record)
    return out
