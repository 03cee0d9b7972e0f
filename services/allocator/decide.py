"""One model's decision: sub-zone threads from the policy, checked against the exact allocator, and the plan.

For the zone cluster of a model (each server's ``threads`` = the model's resource zone on it, FLOPS
and link rates as measured) and the servers that are down:

1. the allocation problem over the servers up (``edgesplit.alloc``: one sub-zone per conv, eq. 5d/5f);
2. the policy's allocation: ``td3`` (the shipped policy whose observation adds each server's
   measured speed and link rate to eq. 9), ``exact`` or ``even``;
3. for ``td3``, the exact allocator's optimum and certified lower bound for the same conditions:
   when TD3's objective is more than ``margin`` above the exact one, the exact allocation is served
   (and so when the policy cannot be used at all, e.g. a cluster shape it was not trained for);
4. the plan: ``make_plan`` with those threads, leaving the servers down out.

A zone too small for one thread per conv (fewer threads than convs) cannot have the paper's
sub-zones: the planner's own grouping and FLOPs-share threads are served (``planner``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgesplit.errors import EdgesplitError, InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster, Server
from edgesplit.plan.latency import LatencyBreakdown, predict, slice_load
from edgesplit.plan.planner import Plan, make_plan
from edgesplit.split import conv_groups

log = logging.getLogger("edgesplit.allocator")

Served = Literal["td3", "exact", "even", "planner"]
ThreadTable = list[list[int]]


@dataclass(frozen=True)
class ModelDecision:
    """What was decided for one model, with the numbers that justify it (seconds)."""

    model: str
    plan: Plan
    served: Served
    objective_s: float | None = None
    td3_s: float | None = None
    exact_s: float | None = None
    lower_bound_s: float | None = None
    note: str = ""

    @property
    def td3_gap(self) -> float | None:
        """TD3's objective over the exact allocator's, minus 1 (None when either is missing)."""
        if self.td3_s is None or not self.exact_s:
            return None
        return self.td3_s / self.exact_s - 1.0

    @property
    def bound_gap(self) -> float | None:
        """The served objective over the certified lower bound, minus 1."""
        if self.objective_s is None or not self.lower_bound_s:
            return None
        return self.objective_s / self.lower_bound_s - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "served": self.served, "objective_s": self.objective_s,
                "td3_s": self.td3_s, "exact_s": self.exact_s, "lower_bound_s": self.lower_bound_s,
                "td3_gap": self.td3_gap, "bound_gap": self.bound_gap, "note": self.note}


class PolicyUnavailable(EdgesplitError):
    """The TD3 policy cannot decide for this model or cluster shape (the exact allocator is served)."""

    status = 503


class Decider:
    """Decisions for every model under one configuration: ``policy``, ``objective``, ``margin``, ``split``."""

    def __init__(self, policy: str = "td3", objective: str = "sum", margin: float = 0.05,
                 split: str = "edgesplit", policy_file: Path | None = None) -> None:
        self.policy = policy
        self.objective = objective
        self.margin = margin
        self.split = split
        self.policy_file = policy_file
        self._td3: dict[str, Any] = {}

    def decide(self, spec: ModelSpec, cluster: Cluster, down: Collection[int] = frozenset()) -> ModelDecision:
        """The decision for ``spec`` on its zone cluster with the servers ``down`` left out (module doc)."""
        active = [m for m in range(len(cluster.servers)) if m not in set(down)]
        if not active:
            raise InvalidPlan(f"all {len(cluster.servers)} executors are down: no plan for {spec.name}")
        n_stages = len(conv_groups(spec))
        zone = [cluster.servers[m].threads for m in range(len(cluster.servers))]
        if min(zone) < n_stages:
            plan = make_plan(spec, cluster, self.split, exclude=frozenset(down))  # type: ignore[arg-type]
            return ModelDecision(spec.name, plan, "planner", plan_objective(plan, self.objective),
                                 note=f"zones {zone} are smaller than the {n_stages} convs of {spec.name}: "
                                      "planner's own grouping and threads")
        from edgesplit.alloc.cost import build_problem

        problem = build_problem(spec, [cluster.servers[m] for m in active], split=self.split)  # type: ignore[arg-type]
        served, alloc, numbers, note = self._allocate(spec, cluster, active, problem)
        table = expand(alloc, active, zone, n_stages)
        plan = make_plan(spec, cluster, self.split, threads=table, exclude=frozenset(down))  # type: ignore[arg-type]
        return ModelDecision(spec.name, plan, served, numbers.get("objective"), numbers.get("td3"),
                             numbers.get("exact"), numbers.get("bound"), note)

    def _allocate(self, spec: ModelSpec, cluster: Cluster, active: Sequence[int],
                  problem: Any) -> tuple[Served, np.ndarray, dict[str, float | None], str]:
        from edgesplit.alloc.cost import even_allocation

        obj = self.objective
        if self.policy == "even":
            alloc = even_allocation(problem.zone, problem.n_stages)
            return "even", alloc, {"objective": problem.value(alloc, obj)}, ""
        exact, _, bound = exact_allocation(problem, obj)
        exact_s = problem.value(exact, obj)
        numbers: dict[str, float | None] = {"objective": exact_s, "exact": exact_s, "bound": bound}
        if self.policy == "exact":
            return "exact", exact, numbers, ""
        try:
            td3 = problem.check(self._td3_allocation(spec, cluster, active, problem))
        except EdgesplitError as e:
            return "exact", exact, numbers, f"TD3 not served: {e}"
        td3_s = problem.value(td3, obj)
        numbers["td3"] = td3_s
        if td3_s > exact_s * (1.0 + self.margin):
            return "exact", exact, numbers, (f"TD3 {td3_s * 1e3:.3f} ms is {td3_s / exact_s - 1:.1%} above "
                                             f"the exact {exact_s * 1e3:.3f} ms (margin {self.margin:.0%})")
        numbers["objective"] = td3_s
        return "td3", td3, numbers, ""

    def _td3_allocation(self, spec: ModelSpec, cluster: Cluster, active: Sequence[int],
                        problem: Any) -> np.ndarray:
        return td3_allocation(self._td3, spec, [cluster.servers[m] for m in active], problem,
                              self.policy_file)


def exact_allocation(problem: Any, objective: str) -> tuple[np.ndarray, float | None, float | None]:
    """The exact allocator's allocation ``[m, i]``, its optimum (None when not computed) and lower bound."""
    from edgesplit.alloc.exact import best_allocation

    result = best_allocation(problem, objective)  # type: ignore[arg-type]
    return np.asarray(result.alloc, dtype=np.int64), result.optimum, result.lower_bound


def td3_allocation(cache: dict[str, Any], spec: ModelSpec, servers: Sequence[Server], problem: Any,
                   policy_file: Path | None) -> np.ndarray:
    """The TD3 policy's allocation ``[m, i]`` for the measured ``servers``: ``policy_file``, else the
    shipped extended-observation policy of the model (``edgesplit.alloc.policy``). A missing policy or
    one trained for another cluster shape raises (an EdgesplitError: the exact allocation is served)."""
    from edgesplit.alloc.policy import load_policy, policy_allocation, shipped_policy

    key = f"{spec.name}:{policy_file}"
    if key not in cache:
        try:
            cache[key] = load_policy(policy_file, "td3") if policy_file is not None else \
                shipped_policy(spec.name, "td3", "extended")
        except EdgesplitError as e:
            cache[key] = e
    loaded = cache[key]
    if isinstance(loaded, EdgesplitError):
        raise PolicyUnavailable(str(loaded))
    return policy_allocation(loaded, spec, servers, problem.zone)


def expand(alloc: np.ndarray, active: Sequence[int], zone: Sequence[int], n_stages: int) -> ThreadTable:
    """The planner's ``threads[g][m]`` over all servers from an allocation ``[j, g]`` over ``active``;
    servers left out get their zone split evenly (unused: the plan gives them no units)."""
    table = [[0] * len(zone) for _ in range(n_stages)]
    for j, m in enumerate(active):
        for g in range(n_stages):
            table[g][m] = int(alloc[j, g])
    for m in set(range(len(zone))) - set(active):
        base, extra = divmod(zone[m], n_stages)
        for g in range(n_stages):
            table[g][m] = base + (1 if g < extra else 0)
    return table


def plan_objective(plan: Plan, objective: str) -> float:
    """A plan's predicted objective, seconds: the sum of its stage latencies (eq. 6) or the largest."""
    return breakdown_objective(plan.predicted, objective)


def breakdown_objective(predicted: LatencyBreakdown, objective: str) -> float:
    stages = [s.total_s for s in predicted.stages]
    return float(sum(stages) if objective == "sum" else max(stages))


def still_good(spec: ModelSpec, cluster: Cluster, current: Plan | None, new: Plan, down: Collection[int],
               objective: str, min_gain: float) -> bool:
    """True when ``current`` still runs on ``cluster`` (same servers, none of its servers down, its
    threads within every zone) and ``new`` would not lower its predicted objective, re-computed with
    today's measurements, by more than ``min_gain`` (relative)."""
    names = tuple(s.name for s in cluster.servers)
    if current is None or current.server_names != names:
        return False
    if any(m in down for st in current.stages for m in st.servers):
        return False
    used = [0] * len(names)
    for st in current.stages:
        for m, k in zip(st.servers, st.threads, strict=True):
            used[m] += k
    if any(u > s.threads for u, s in zip(used, cluster.servers, strict=True)):
        return False
    old = breakdown_objective(predict(spec, cluster, current.stages), objective)
    return plan_objective(new, objective) >= old * (1.0 - min_gain)


def slice_flops_by_server(spec: ModelSpec, plan: Plan) -> dict[str, dict[int, float]]:
    """``{server: {stage: FLOPs}}`` of the slice each server computes in each stage of ``plan``
    (halo recomputation included, as the executor counts them)."""
    out: dict[str, dict[int, float]] = {}
    for k, st in enumerate(plan.stages):
        for m, sl in zip(st.servers, st.slices(spec), strict=True):
            if not sl.empty:
                out.setdefault(plan.server_names[m], {})[k] = slice_load(spec, sl).flops
    return out


def units_per_server(plan: Plan) -> dict[str, int]:
    """Units (rows, kernel rows or channels) each server computes over all stages, by server name."""
    out = {name: 0 for name in plan.server_names}
    for st in plan.stages:
        for m, n in zip(st.servers, st.parts, strict=True):
            name = plan.server_names[m] if m < len(plan.server_names) else str(m)
            out[name] = out.get(name, 0) + int(n)
    return out
