"""Resource allocation (paper section 3.2 step 1 and section 4.2): zones, sub-zones, TD3/DDPG.

* ``zones``: each server's threads shared among the deployed CNNs by FLOPs share.
* ``cost``: one zone's allocation problem as cost tables of the planner's latency model.
* ``bounds`` / ``dual`` / ``exact``: the certified lower bounds (the zone-row relaxation; its
  Lagrangian dual, which prices each server's zone) and the best allocation (optimum where proven).
* ``env``: the paper's MDP (eq. 8-10, Algorithm 2 clipping) as a gymnasium environment.
* ``train`` / ``policy``: stable-baselines3 TD3 and DDPG training, shipped policies.
* ``registry``: every allocation policy as one object (``ALLOC_POLICIES``), which ``allocate`` and the
  allocator service dispatch through;
* ``allocate``: one call for every policy, with the gap to the bound; ``fig6``: the paper's fig. 6;
* ``heldout`` / ``sweep``: judging policies on held-out draws of server speeds and link rates, the
  seed sweep behind the shipped policies.

SB3, gymnasium and torch are imported lazily (environment, training and policies only).
"""

from typing import Any

from edgesplit.alloc.allocate import AllocationReport, allocate
from edgesplit.alloc.bounds import Bound, lower_bound
from edgesplit.alloc.cost import AllocProblem, build_problem, even_allocation
from edgesplit.alloc.exact import AllocResult, best_allocation, brute_force
from edgesplit.alloc.zones import apportion_min, zones

__all__ = [
    "AllocProblem",
    "AllocResult",
    "AllocationReport",
    "Bound",
    "allocate",
    "apportion_min",
    "best_allocation",
    "brute_force",
    "build_problem",
    "even_allocation",
    "lower_bound",
    "reproduce_fig6",
    "zones",
]


def __getattr__(name: str) -> Any:
    """``reproduce_fig6`` without importing gymnasium and SB3 with the package."""
    if name == "reproduce_fig6":
        from edgesplit.alloc.fig6 import reproduce_fig6

        return reproduce_fig6
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
