"""One model's decision: sub-zone threads from the policy, checked against the exact allocator, and the plan.

For the zone cluster of a model (each server's ``threads`` = the model's resource zone on it, FLOPS
and link rates as measured) and the servers that are down:

1. the allocation problem over the servers up (``edgesplit.alloc``: one sub-zone per conv, eq. 5d/5f);
2. the policy's allocation, from the one object ``edgesplit.alloc.registry.ALLOC_POLICIES`` maps the
   configured name to: ``td3`` (the shipped policy whose observation adds each server's measured
   speed and link rate to eq. 9), ``exact``, ``even``, ...;
3. for a learned policy (``td3``, ``ddpg``), the exact allocator's optimum and certified lower bound
   for the same conditions: when the policy's objective is more than ``margin`` above the exact one,
   the exact allocation is served (and so when the policy cannot be used at all, e.g. a cluster
   shape it was not trained for);
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
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.latency import LatencyBreakdown, predict, slice_load
from edgesplit.plan.planner import Plan, make_plan
from edgesplit.split import conv_groups
from edgesplit.type_aliases import AllocPolicyName

log = logging.getLogger("edgesplit.allocator")

Served = AllocPolicyName | Literal["planner"]
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


class Decider:
    """Decisions for every model under one configuration: ``policy`` (a name of
    ``edgesplit.alloc.registry.ALLOC_POLICIES``), ``objective``, ``margin``, ``split``; ``policy_file``
    replaces a learned policy's shipped file."""

    def __init__(self, policy: str = "td3", objective: str = "sum", margin: float = 0.05,
                 split: str = "edgesplit", policy_file: Path | None = None) -> None:
        from edgesplit.alloc.registry import ALLOC_POLICIES

        chosen = ALLOC_POLICIES[policy]
        self.policy = chosen.at(policy_file) if policy_file is not None and chosen.learned else chosen
        self.objective = objective
        self.margin = margin
        self.split = split

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
        from edgesplit.alloc.registry import AllocRequest

        servers = [cluster.servers[m] for m in active]
        problem = build_problem(spec, servers, split=self.split)  # type: ignore[arg-type]
        request = AllocRequest(spec, servers, problem, self.objective)  # type: ignore[arg-type]
        served, alloc, numbers, note = self._allocate(request)
        table = expand(alloc, active, zone, n_stages)
        plan = make_plan(spec, cluster, self.split, threads=table, exclude=frozenset(down))  # type: ignore[arg-type]
        return ModelDecision(spec.name, plan, served, numbers.get("objective"), numbers.get("td3"),
                             numbers.get("exact"), numbers.get("bound"), note)

    def _allocate(self, request: Any) -> tuple[Served, np.ndarray, dict[str, float | None], str]:
        """The policy's allocation; a learned policy is served only within ``margin`` of the exact
        allocator (and the exact allocation when it cannot decide at all)."""
        policy, problem, obj = self.policy, request.problem, self.objective
        name = policy.name.upper()
        try:
            alloc = problem.check(policy.allocation(request))
        except EdgesplitError as e:
            if not policy.learned:
                raise
            alloc, note = None, f"{name} not served: {e}"
        numbers: dict[str, float | None] = {}
        if policy.learned or request.exact_known:
            exact = request.exact()
            exact_s = problem.value(exact.alloc, obj)
            numbers = {"objective": exact_s, "exact": exact_s, "bound": exact.lower_bound}
        if not policy.learned:
            numbers["objective"] = problem.value(alloc, obj)
            return policy.name, alloc, numbers, ""
        if alloc is None:
            return "exact", exact.alloc, numbers, note
        learned_s = problem.value(alloc, obj)
        numbers["td3"] = learned_s
        if learned_s > exact_s * (1.0 + self.margin):
            return "exact", exact.alloc, numbers, (f"{name} {learned_s * 1e3:.3f} ms is "
                                                   f"{learned_s / exact_s - 1:.1%} above the exact "
                                                   f"{exact_s * 1e3:.3f} ms (margin {self.margin:.0%})")
        numbers["objective"] = learned_s
        return policy.name, alloc, numbers, ""


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
