"""One call for every allocation policy of ``registry.ALLOC_POLICIES``: exact, even, FLOPs share, TD3/DDPG.

``allocate`` returns the allocation with its objective value, the certified lower bound, the
optimum where it is proven, and the gap ``latency / lower_bound - 1``; this is what
``edgesplit allocate --json`` prints and what the allocator service and the simulator call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgesplit.alloc.cost import ALLOC_SPLITS, OBJECTIVES, AllocSplit, IntArray, Objective, build_problem
from edgesplit.alloc.registry import AllocRequest, policies_help, resolve
from edgesplit.errors import InvalidInput
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server

POLICIES_HELP = policies_help()


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


def allocate(spec: ModelSpec, servers: Sequence[Server], policy: str = "exact", objective: Objective = "sum",
             split: AllocSplit | None = None, zone: Sequence[int] | None = None) -> AllocationReport:
    """Allocate the zone of ``spec`` on ``servers`` with ``policy`` (a name of ``registry.ALLOC_POLICIES``
    or ``td3:PATH`` / ``ddpg:PATH``) and score it against the exact allocator's bound."""
    if objective not in OBJECTIVES:
        raise InvalidInput(f"unknown objective {objective!r}; expected one of {', '.join(OBJECTIVES)}")
    if split is not None and split not in ALLOC_SPLITS:
        raise InvalidInput(f"unknown split {split!r}; expected one of {', '.join(ALLOC_SPLITS)}")
    chosen = resolve(policy)
    problem = build_problem(spec, servers, zone, chosen.split_for(spec, split))
    request = AllocRequest(spec, servers, problem, objective)
    alloc = problem.check(chosen.allocation(request))
    best = request.exact()
    return AllocationReport(policy, objective, problem.split, alloc, problem.value(alloc, objective),
                            best.optimum, best.lower_bound, best.method)
