"""Routes: which layers a task runs where. The pipeline's view of a plan, for every serving mode.

* ``split``: the planner's plan (static from the cluster description, or the allocator's from Redis
  ``plan:{model}``, newest version wins); one step per plan stage, sub-zone = stage index.
* ``no-split``: one step, all edge layers as a single ``rows`` slice of all rows, on one executor.
* ``dads``: one such step up to the DADS cut, the cloud runs the rest (``cloud_from`` = the cut).

A step whose executor fails is re-planned without it (``make_plan(..., exclude=down)``); when the new
plan has no stage with the same layer range the step is split by rows over the executors still up,
in proportion to their threads, which is valid for any layer range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgesplit.errors import InvalidPlan, Unavailable
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.planner import StagePlan
from edgesplit.plan.quotas import plan_quotas
from edgesplit.split import part_total
from edgesplit.type_aliases import Quotas

__all__ = ["Quotas", "Route", "Step", "merge_quotas", "owned_models", "owned_quotas", "proportional_parts",
           "replacement", "route_from_plan", "rows_step"]


Step = StagePlan
"""One edge stage of a route: layers ``[start, stop)`` split by ``strategy``, ``parts[i]`` units on server
``servers[i]`` whose sub-zone for it has ``threads[i]`` threads: the planner's stage, one serialisation."""


@dataclass(frozen=True)
class Route:
    """The edge steps of a task and the first layer the cloud runs (``spec.n_edge`` but for DADS)."""

    steps: tuple[Step, ...]
    cloud_from: int
    version: int = 0
    source: str = "static"

    def uses(self) -> set[int]:
        return {m for step in self.steps for m in step.servers}

    def shape_key(self) -> int:
        """What the pipeline's structure depends on: the number of stages."""
        return len(self.steps)


def proportional_parts(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` units in proportion to ``weights`` (largest remainder; sums to ``total``)."""
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise InvalidPlan(f"cannot split {total} units over weights {list(weights)}")
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def rows_step(spec: ModelSpec, start: int, stop: int, servers: Sequence[int],
              threads: Sequence[int]) -> Step:
    """Layers ``[start, stop)`` split by output rows over ``servers`` in proportion to ``threads``."""
    if not servers:
        raise Unavailable(f"no executor is up to run layers [{start}, {stop}) of {spec.name}")
    total = part_total(spec, start, stop, "rows")
    parts = proportional_parts(total, list(threads))
    kept = [(m, n, k) for m, n, k in zip(servers, parts, threads, strict=True) if n > 0]
    return Step(start, stop, "rows", tuple(m for m, _, _ in kept), tuple(n for _, n, _ in kept),
                tuple(k for _, _, k in kept))


def route_from_plan(plan: Any, spec: ModelSpec, source: str) -> Route:
    """A split-mode route from a planner ``Plan`` (its stages' start, stop, strategy, servers, parts)."""
    steps = []
    for st in plan.stages:
        kept = [(m, n, k) for m, n, k in zip(st.servers, st.parts, st.threads, strict=True) if n > 0]
        steps.append(Step(st.start, st.stop, st.strategy, tuple(m for m, _, _ in kept),
                          tuple(n for _, n, _ in kept), tuple(k for _, _, k in kept)))
    covered = [(s.start, s.stop) for s in steps]
    ends = [0] + [b for _, b in covered]
    cloud_from = plan.edge_stop(spec)
    if any(a != ends[i] for i, (a, _) in enumerate(covered)) or ends[-1] != cloud_from:
        raise InvalidPlan(f"plan of {spec.name} covers layers {covered}, expected consecutive ranges from 0 "
                          f"to {cloud_from}")
    return Route(tuple(steps), cloud_from, int(getattr(plan, "version", 0) or 0), source)


def replacement(route: Route | None, spec: ModelSpec, failed: Step, up: Sequence[int],
                threads: Sequence[int]) -> Step:
    """The step to retry ``failed`` with: the same layers in ``route`` (a fresh plan without the failed
    executor) when it has them on executors all up, else a rows split over ``up``."""
    if route is not None:
        for step in route.steps:
            if (step.start, step.stop) == (failed.start, failed.stop) and set(step.servers) <= set(up):
                return step
    return rows_step(spec, failed.start, failed.stop, up, [threads[m] for m in up])


def owned_quotas(routes: Mapping[str, Route], up: Sequence[int]) -> dict[int, Quotas]:
    """Sub-zone threads per executor ``{server: {model: {stage: threads}}}`` of the routes planned here
    (not those from Redis, whose publisher sets its own), for the executors in ``up``: the core's one
    rule (``plan.quotas.plan_quotas``) that the allocator applies to its plans too."""
    owned = owned_models(routes)
    return plan_quotas({name: route.steps for name, route in routes.items() if name in owned}, up)


def owned_models(routes: Mapping[str, Route]) -> set[str]:
    """The models whose quotas this orchestrator sets: those planned here (not taken from Redis)."""
    return {name for name, route in routes.items() if route.source != "redis"}


def merge_quotas(current: Quotas, ours: Quotas, owned: set[str]) -> Quotas:
    """An executor's quota table with the entries of the ``owned`` models replaced by ``ours`` (a model
    in ``owned`` but not in ``ours`` loses its entry) and every other model's entry kept as it is
    (the allocator service's, or another orchestrator's)."""
    merged = {m: dict(q) for m, q in current.items() if m not in owned}
    merged.update({m: dict(q) for m, q in ours.items() if m in owned and q})
    return merged
