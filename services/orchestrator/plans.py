"""Where a model's route comes from, per serving mode, and how a failed step is re-planned.

``split``: the allocator's plan in Redis ``plan:{model}`` when there is one (a ``Plan.to_dict`` with a
``version``, taken when the version grows; read at most every ``refresh_s``), else a static plan made
here from the cluster description with ``make_plan``. A step whose executor failed is retried on
a plan without it (``PlanSource.retry``). A Redis plan that uses an executor marked
down is set aside for a local plan without it until the executor is back; a plan withdrawn from
Redis gives way to the local one. The pipeline asks for the route between tasks, so a new plan
version takes effect at the next task.

``no-split`` / ``dads``: one step on the least loaded executor, cut where the serving mode says
(``plan.modes``: ``spec.n_edge``, or the DADS min-cut clamped to the edge part, the simulator's too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from edgesplit.errors import EdgesplitError, InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.modes import SERVING_MODES, whole_stage
from services.orchestrator.pool import ExecutorPool
from services.orchestrator.queue import TaskQueue
from services.orchestrator.routes import Route, Step, replacement, route_from_plan
from services.orchestrator.settings import Mode, SplitKind

log = logging.getLogger("edgesplit.orchestrator")


def model_zones(cluster: Cluster, specs: Mapping[str, ModelSpec]) -> dict[str, Cluster]:
    """The cluster each model plans on: every executor's threads split into resource zones by the one
    rule the allocator and the simulator use too (``edgesplit.alloc.zones.server_zones``)."""
    from edgesplit.alloc.zones import zone_clusters

    return zone_clusters(cluster, list(specs.values()))


class PlanSource:
    """The current route of one model (see the module docstring)."""

    def __init__(self, spec: ModelSpec, cluster: Cluster, pool: ExecutorPool, queue: TaskQueue, mode: Mode,
                 split: SplitKind = "edgesplit", refresh_s: float = 0.5, conv_groups: bool = False) -> None:
        self.spec = spec
        self.cluster = cluster
        self.pool = pool
        self.queue = queue
        self.mode = mode
        self.serving = SERVING_MODES[mode]
        self.split = split
        self.conv_groups = conv_groups
        self.refresh_s = refresh_s
        self._local: dict[frozenset[int], Route] = {}
        self._redis: Route | None = None
        self._checked = 0.0
        self.cut = self.serving.edge_stop(spec, cluster)
        self.current: Route | None = None

    async def local(self, without: frozenset[int] | None = None) -> Route:
        """A plan made here for the executors now up, or for all but ``without`` (cached per set of
        executors left out)."""
        down = frozenset(self.pool.down) if without is None else without
        route = self._local.get(down)
        if route is None:
            if len(down) == len(self.cluster.servers):
                raise InvalidPlan(f"all {len(down)} executors are down")
            plan = await asyncio.to_thread(self._make_plan, down)
            route = route_from_plan(plan, self.spec, "static" if not down else "replan")
            self._local[down] = route
        return route

    def _make_plan(self, down: frozenset[int]) -> Any:
        """``make_plan`` without the executors down. When zones are too small for the planner's
        grouping (fewer threads than stages), fall back to one fused group of all edge layers."""
        from edgesplit.plan.planner import make_plan

        try:
            return make_plan(self.spec, self.cluster, self.split, None, down,
                             one_conv_per_group=self.conv_groups)
        except InvalidPlan as e:
            log.warning("plan of %s: %s; using one fused group of all edge layers", self.spec.name, e)
            return make_plan(self.spec, self.cluster, "edgesplit", None, down, groups=[(0, self.spec.n_edge)])

    async def _refresh_redis(self) -> None:
        if time.monotonic() - self._checked < self.refresh_s:
            return
        self._checked = time.monotonic()
        try:
            raw = await self.queue.get_plan(self.spec.name)
        except EdgesplitError as e:
            log.warning("cannot read the plan of %s from Redis: %s", self.spec.name, e)
            return
        if raw is None:  # none published, or withdrawn: the local plan again
            self._redis = None
            return
        if self._redis is not None and int(raw.get("version", 0)) <= self._redis.version:
            return
        try:
            self._redis = self._parse(raw)
            log.info("plan of %s: version %d from Redis", self.spec.name, self._redis.version)
        except (EdgesplitError, KeyError, TypeError, ValueError) as e:
            log.warning("ignoring the plan of %s in Redis: %s", self.spec.name, e)

    def _parse(self, raw: dict[str, Any]) -> Route:
        """A published plan as a route; its server indices follow its ``server_names`` when it has them
        (the allocator may list the executors in another order than this cluster file)."""
        from edgesplit.plan.planner import Plan

        plan = Plan.from_dict(raw)
        if plan.server_names:
            ours = {s.name: m for m, s in enumerate(self.cluster.servers)}
            unknown = sorted(set(plan.server_names) - set(ours))
            if unknown:
                raise InvalidPlan(f"plan names executors {unknown} that are not in the cluster description")
            stages = tuple(replace(st, servers=tuple(ours[plan.server_names[m]] for m in st.servers))
                           for st in plan.stages)
            plan = replace(plan, stages=stages, server_names=tuple(s.name for s in self.cluster.servers))
        plan.validate(self.spec, len(self.cluster.servers))
        return route_from_plan(plan, self.spec, "redis")

    async def route(self) -> Route:
        """The route for the next task."""
        if not self.serving.planned:
            return self.single(self.pool.least_loaded())
        await self._refresh_redis()
        if self._redis is not None and not (self._redis.uses() & self.pool.down):
            self.current = self._redis
        else:
            self.current = await self.local()
        return self.current

    def single(self, server: int) -> Route:
        if self.cut == 0:
            return Route((), 0, 0, self.mode)
        return Route((self._whole(self.cut, server),), self.cut, 0, self.mode)

    def _whole(self, stop: int, server: int) -> Step:
        return whole_stage(self.spec, stop, server, self.cluster.servers[server].threads)

    async def retry(self, failed: Step, avoid: Collection[int] = ()) -> Step:
        """The step to run instead of ``failed`` after an executor failed (module docstring): on the
        executors up and not in ``avoid`` (those that failed it), or on all up when that leaves none."""
        if not self.serving.planned:
            return self._whole(failed.stop, self.pool.least_loaded(avoid))
        without = frozenset(self.pool.down) | frozenset(avoid)
        if len(without) >= len(self.cluster.servers):
            without = frozenset(self.pool.down)
        up = [m for m in range(len(self.cluster.servers)) if m not in without]
        threads = [s.threads for s in self.cluster.servers]
        try:
            fresh: Route | None = await self.local(without)
        except EdgesplitError:
            fresh = None
        return replacement(fresh, self.spec, failed, up, threads)
