"""One call for every allocation policy: exact, even, FLOPs share, or a trained TD3/DDPG policy.

``allocate`` returns the allocation with its objective value, the certified lower bound, the
optimum where it is proven, and the gap ``latency / lower_bound - 1``; this is what
``edgesplit allocate --json`` prints and what the allocator service and the simulator call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgesplit.alloc.cost import ALLOC_SPLITS, OBJECTIVES, AllocSplit, IntArray, Objective, build_problem
from edgesplit.alloc.cost import even_allocation as _even
from edgesplit.alloc.exact import best_allocation, flops_share_allocation
from edgesplit.errors import InvalidInput
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server

POLICIES_HELP = "exact | even | flops-share | td3 (the shipped policy of the split) | td3:PATH | ddpg:PATH"


@dataclass(frozen=True)
class AllocationReport:
    """An allocation ``alloc[m, i]`` (server m, stage i) and how good it is. Seconds."""

    policy: str
    objective: Objective
    split: AllocSplit
    alloc: IntArray
    latency_s: float
    optimum_s: float | None
    lower_bound_s: float
    method: str

    @property
    def gap(self) -> float:
        return self.latency_s / self.lower_bound_s - 1.0

    def threads_by_stage(self) -> list[list[int]]:
        """``threads[g][m]``: the layout ``plan.make_plan(threads=...)`` takes."""
        return self.alloc.T.tolist()

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "objective": self.objective, "split": self.split,
                "latency_s": self.latency_s, "optimum_s": self.optimum_s, "lower_bound_s": self.lower_bound_s,
                "gap": self.gap, "exact_method": self.method, "allocation": self.alloc.tolist()}


def _policy_alloc(policy: str, spec: ModelSpec, servers: Sequence[Server], zone: Sequence[int] | None,
                  split: AllocSplit | None) -> tuple[IntArray, AllocSplit | None]:
    from edgesplit.alloc.policy import load_policy, policy_allocation, shipped_policy

    algo, _, path = policy.partition(":")
    family = split or "edgesplit"
    loaded = load_policy(path, algo) if path else shipped_policy(spec.name, algo, split=family)
    return policy_allocation(loaded, spec, servers, zone), loaded.meta.get("split")


def allocate(spec: ModelSpec, servers: Sequence[Server], policy: str = "exact", objective: Objective = "sum",
             split: AllocSplit | None = None, zone: Sequence[int] | None = None) -> AllocationReport:
    """Allocate the zone of ``spec`` on ``servers`` with ``policy`` (POLICIES_HELP) and score it."""
    if objective not in OBJECTIVES:
        raise InvalidInput(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if split is not None and split not in ALLOC_SPLITS:
        raise InvalidInput(f"unknown split {split!r}; expected one of {', '.join(ALLOC_SPLITS)}")
    chosen: IntArray | None = None
    if policy.split(":")[0] in ("td3", "ddpg"):
        chosen, trained_split = _policy_alloc(policy, spec, servers, zone, split)
        split = split or trained_split
    elif policy not in ("exact", "even", "flops-share"):
        raise InvalidInput(f"unknown policy {policy!r}; expected {POLICIES_HELP}")
    problem = build_problem(spec, servers, zone, split or "edgesplit")
    best = best_allocation(problem, objective)
    if policy == "exact":
        chosen = best.alloc
    elif policy == "even":
        chosen = _even(problem.zone, problem.n_stages)
    elif policy == "flops-share":
        chosen = flops_share_allocation(problem)
    assert chosen is not None
    chosen = problem.check(chosen)
    return AllocationReport(policy, objective, problem.split, chosen, problem.value(chosen, objective),
                            best.optimum, best.lower_bound, best.method)
