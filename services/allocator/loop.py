"""The control loop of co2: measure, decide, push quotas, publish plans, record every decision.

Every ``measure_s`` the executors and links are measured. A re-plan runs when ``period_s`` has passed
since the last one, when a server's measured speed or link rate moved by more than
``change_threshold`` (relative) from the values the current plans were made with, when an executor
goes down or comes back (or its pod, in Kubernetes mode), and on ``POST /v1/replan``. A re-plan:

1. builds the measured cluster and each model's resource zones on it (FLOPs share, section 3.2);
2. decides each model (``decide.Decider``: policy, exact check, plan without the executors down);
3. pushes the quotas the plans imply (``{model: {stage: threads}}``) to every executor whose quotas
   change, those whose zone total shrinks first, so no executor is ever asked for more than its
   capacity; in Kubernetes mode a pod's CPU grows before its quotas do and shrinks after;
4. publishes each changed plan under ``plan:{model}`` with the next version (the orchestrator takes
   it between tasks); an unchanged plan keeps its version;
5. records one decision per model (``/v1/decisions``, metrics).

Between re-plans, quotas found different from those decided (an executor restarted, or someone else
set them) are put back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from edgesplit.errors import EdgesplitError, Unavailable
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.planner import Plan
from services.allocator.decide import (
    Decider,
    ModelDecision,
    slice_flops_by_server,
    still_good,
    units_per_server,
)
from services.allocator.executors import (
    ExecutorRef,
    Quotas,
    cluster_changes,
    executor_refs,
    is_up,
    measured_cluster,
    plan_quotas,
    update_order,
)
from services.allocator.kube import KubeExecutors
from services.allocator.measure import (
    NO_STATS,
    ComputeFit,
    ExecutorSample,
    Measurer,
    SliceStats,
)
from services.allocator.metrics import AllocatorMetrics
from services.allocator.plans import PlanStore
from services.allocator.push import Pusher
from services.allocator.settings import AllocatorSettings
from services.allocator.zones import zone_clusters
from services.common.http import HttpPool

log = logging.getLogger("edgesplit.allocator")


TRIGGERS = ("start", "admin", "down", "back", "speed", "link", "pods", "executors changed", "period")


def trigger_kind(trigger: str) -> str:
    """The metrics label of a re-plan's trigger: the first kind named in it."""
    return next((k for k in TRIGGERS if k in trigger), "other")


class Controller:
    """Controller co2 (module docstring). ``base``: the cluster file, or None (Kubernetes discovery)."""

    def __init__(self, settings: AllocatorSettings, specs: dict[str, ModelSpec], base: Cluster | None,
                 redis: aioredis.Redis, http: HttpPool, metrics: AllocatorMetrics,
                 kube: KubeExecutors | None = None) -> None:
        self.settings = settings
        self.specs = specs
        self.base = base
        self.redis = redis
        self.http = http
        self.metrics = metrics
        self.kube = kube
        self.decider = Decider(settings.policy, settings.objective, settings.margin, settings.split,
                               settings.policy_file)
        self.measurer = Measurer(http, redis, settings.prefix, settings.token, settings.http_timeout_s,
                                 settings.link_window)
        self.refs: list[ExecutorRef] = []
        self.samples: dict[str, ExecutorSample] = {}
        self.links: dict[str, SliceStats] = {}
        self.store = PlanStore(redis, settings.prefix, metrics)
        self.desired: dict[str, Quotas] = {}
        self.decisions: collections.deque[dict[str, Any]] = collections.deque(maxlen=settings.max_decisions)
        self.measured_at: float | None = None
        self._planned: tuple[Cluster, frozenset[str]] | None = None
        self._last_replan = float("-inf")
        self._triggers: list[str] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.pusher = Pusher(http, settings.token, settings.http_timeout_s, metrics, kube)
        self._seq = 0
        self._watcher: threading.Thread | None = None
        self.fit = ComputeFit()
        self._since: dict[str, float] = {}
        self._changed_at = float("-inf")
        self._slice_flops: dict[tuple[str, int], dict[str, dict[int, float]]] = {}

    # --- triggers -----------------------------------------------------------------------------------

    def request(self, trigger: str) -> None:
        """Ask for a re-plan at the next turn of the loop (call from the event loop's thread)."""
        self._triggers.append(trigger)
        self._wake.set()

    def start_watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Kubernetes mode: watch the executor pods on a thread; a change re-plans."""
        if self.kube is None:
            return
        kube = self.kube

        def changed() -> None:
            loop.call_soon_threadsafe(self.request, "executor pods changed")

        self._watcher = threading.Thread(target=kube.watch_forever, args=(changed,), daemon=True,
                                         name="es-allocator-watch")
        self._watcher.start()

    def stop_watch(self) -> None:
        if self.kube is not None:
            self.kube.stopping.set()

    async def run(self) -> None:
        """The loop: measure every ``measure_s``; re-plan when due (module docstring). Never returns."""
        while True:
            triggers, self._triggers = self._triggers, []
            self._wake.clear()
            try:
                async with self._lock:
                    await self._measure()
                    triggers += self.changes()
                    if time.monotonic() - self._last_replan >= self.settings.period_s:
                        triggers.append("period")
                    if triggers and self.refs:
                        await self._replan(", ".join(dict.fromkeys(triggers)))
                    else:
                        await self._heal_quotas()
            except Exception:  # one bad round must not end the loop
                log.exception("allocator round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.measure_interval_s)

    async def replan_now(self, trigger: str = "admin") -> list[dict[str, Any]]:
        """Measure and re-plan at once; returns the decisions made."""
        async with self._lock:
            await self._measure()
            return await self._replan(trigger)

    # --- measuring ----------------------------------------------------------------------------------

    async def _measure(self) -> None:
        pods = self.kube.pods() if self.kube is not None else None
        self.refs = executor_refs(self.base, pods, self.settings.default_executor_threads)
        was_up = {n for n, s in self.samples.items() if s.up}
        samples = await self.measurer.executors({r.name: r.url for r in self.refs})
        now = time.time()
        changed = max(self._changed_at, self.store.changed_at)
        settled = time.monotonic() - changed >= 2 * self.settings.measure_interval_s
        for ref in self.refs:
            s = samples[ref.name]
            restarted = s.up and self.fit.update(ref.name, s.compute,
                                                 self._work(ref.name, s.workers) if settled else None)
            if restarted or (s.up and self.samples and ref.name not in was_up):
                self._since[ref.name] = now  # a new process: its old slice records say nothing of it
        self.samples = samples
        self.links = await self.measurer.links(list(samples), self._since)
        self.measured_at = now
        for ref in self.refs:
            s, link = self.samples[ref.name], self.links[ref.name]
            self.metrics.up.labels(ref.name).set(1 if self._up(ref) else 0)
            self.metrics.queued.labels(ref.name).set(s.queued)
            if s.flops_per_thread:
                self.metrics.flops.labels(ref.name).set(s.flops_per_thread)
            if link.link_bps:
                self.metrics.link.labels(ref.name).set(link.link_bps)

    def _work(self, name: str, workers: dict[tuple[str, int], int]) -> dict[tuple[str, int], float]:
        """FLOPs per worker of the slices executor ``name`` runs in each (model, stage) of the plans."""
        out = {}
        for model, plan in self.store.plans.items():
            key = (model, plan.version)
            if key not in self._slice_flops:
                self._slice_flops[key] = slice_flops_by_server(self.specs[model], plan)
            for k, flops in self._slice_flops[key].get(name, {}).items():
                out[(model, k)] = flops / max(1, workers.get((model, k), 1))
        return out

    def _up(self, ref: ExecutorRef) -> bool:
        return is_up(ref, self.samples.get(ref.name), self.kube is not None)

    def cluster(self) -> Cluster:
        """The measured cluster over every managed executor (down ones included: plans index them)."""
        cloud = self.base.cloud if self.base is not None else None
        fits = {r.name: f for r in self.refs if (f := self.fit.estimate(r.name)) is not None}
        return measured_cluster(self.refs, self.samples, self.links, cloud, list(self.specs), fits)

    def down(self) -> frozenset[str]:
        return frozenset(r.name for r in self.refs if not self._up(r))

    def changes(self) -> list[str]:
        """Why the current plans are out of date (empty when they are not); see the module docstring."""
        if not self.refs:
            return []
        if self._planned is None:
            return ["start"]
        return cluster_changes(*self._planned, self.cluster(), self.down(), self.settings.change_threshold)

    # --- deciding -----------------------------------------------------------------------------------

    async def _replan(self, trigger: str) -> list[dict[str, Any]]:
        if not self.refs:
            raise Unavailable("no executor to plan on: the cluster file lists none and no pod matches "
                              f"{self.settings.executor_selector!r}")
        t0 = time.perf_counter()
        self.metrics.replans.labels(trigger_kind(trigger)).inc()
        cluster, down_names = self.cluster(), self.down()
        names = [s.name for s in cluster.servers]
        down = frozenset(names.index(n) for n in down_names)
        # a change of the executors up always takes the new plan; otherwise only a clear gain does
        same_set = self._planned is not None and self._planned[1] == down_names and \
            [s.name for s in self._planned[0].servers] == names
        zones = zone_clusters(cluster, self.specs)
        decided: dict[str, ModelDecision] = {}
        errors: dict[str, str] = {}
        kept: set[str] = set()
        for model, spec in self.specs.items():
            try:
                d = await asyncio.to_thread(self.decider.decide, spec, zones[model], down)
            except EdgesplitError as e:
                errors[model] = str(e)
                self.metrics.errors.labels(model).inc()
                log.warning("no new plan for %s: %s", model, e)
                continue
            decided[model] = d
            if same_set and still_good(spec, zones[model], self.store.plans.get(model), d.plan, down,
                                       self.settings.objective, self.settings.min_gain):
                kept.add(model)
        plans = {m: self.store.plans[m] if m in kept or m not in decided else decided[m].plan
                 for m in self.specs if m in decided or m in self.store.plans}
        resizes = await self._push_quotas(plan_quotas(plans, names))
        versions = {m: await self.store.publish(m, plans[m], decided[m].served) for m in decided}
        self._planned = (cluster, down_names)
        self._last_replan = time.monotonic()
        self.metrics.decide_s.observe(time.perf_counter() - t0)
        return [self._record(trigger, model, decided.get(model), model in kept, versions.get(model),
                             errors.get(model), cluster, sorted(down_names), resizes) for model in self.specs]

    # --- quotas and pods ----------------------------------------------------------------------------

    @property
    def plans(self) -> dict[str, Plan]:
        """The newest published plan of every model."""
        return self.store.plans

    async def _push_quotas(self, desired: dict[str, Quotas]) -> list[dict[str, Any]]:
        """Send the changed quotas (``push.Pusher``); returns the pod resizes made."""
        self.desired = desired
        current = {n: s.quotas for n, s in self.samples.items()}
        return await self.pusher.push(self.refs, current, desired, self._up, self._put_done)

    def _put_done(self, name: str, quotas: Quotas) -> None:
        self._changed_at = time.monotonic()
        self.samples[name] = replace(self.samples[name], quotas=quotas)

    async def _heal_quotas(self) -> None:
        """Put back quotas that differ from those decided (module docstring)."""
        current = {n: s.quotas for n, s in self.samples.items() if s.up}
        stale = update_order(current, {n: q for n, q in self.desired.items() if n in current})
        if stale:
            log.info("quotas differ from the decided ones on %s: putting them back", ", ".join(stale))
            await self._push_quotas({**self.desired})

    # --- records ------------------------------------------------------------------------------------

    def _record(self, trigger: str, model: str, d: ModelDecision | None, kept: bool, version: int | None,
                error: str | None, cluster: Cluster, down: list[str],
                resizes: list[dict[str, Any]]) -> dict[str, Any]:
        self._seq += 1
        plan = self.store.plans.get(model)
        rec: dict[str, Any] = {
            "id": self._seq, "time": time.time(), "trigger": trigger, "model": model,
            "policy": self.settings.policy, "served": d.served if d else None, "version": version,
            "published": version is not None, "kept": kept, "current_version": self.store.versions.get(model),
            "excluded": down, "error": error, "resizes": resizes,
            "units": units_per_server(plan) if plan is not None else {},
            "predicted_s": plan.predicted.total_s if plan is not None else None,
            "measured": {s.name: {"flops_per_thread": s.flops_per_thread, "link_bps": s.link_bps,
                                  "overhead_s": s.overhead_s, "threads": s.threads} for s in cluster.servers},
            "quotas": {n: {m: {str(k): t for k, t in q.items()} for m, q in qs.items()}
                       for n, qs in self.desired.items()},
            **(d.to_dict() if d is not None else {}),
        }
        self.decisions.append(rec)
        if d is not None:
            self.metrics.count(d, self.settings.policy)
            for name, units in rec["units"].items():
                self.metrics.units.labels(model, name).set(units)
        return rec

    def measurements(self) -> dict[str, Any]:
        """The last measurement of every executor and link."""
        return {"time": self.measured_at,
                "executors": [{**self.samples[r.name].to_dict(), "up": self._up(r),
                               "pod": r.pod.name if r.pod else None,
                               "slices": self.links.get(r.name, NO_STATS).to_dict(),
                               "compute_fit": _fit_dict(self.fit.estimate(r.name))}
                              for r in self.refs if r.name in self.samples]}

    async def aclose(self) -> None:
        self.stop_watch()
        await self.pusher.aclose()


def _fit_dict(fit: tuple[float, float] | None) -> dict[str, float] | None:
    return None if fit is None else {"flops_per_thread": fit[0], "overhead_s": fit[1]}
