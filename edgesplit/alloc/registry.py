"""Allocation policies, one object each, in one registry (``ALLOC_POLICIES``; SB3's ``policy_aliases``).

A policy turns one zone's allocation problem into an allocation ``alloc[m, i]`` (threads of server m
for conv i, eq. 5d/5f). ``edgesplit allocate``, the simulator and the allocator service all look a
policy up here and ask the object; none compares a policy's name with a string.

* ``exact``: the exact allocator's best allocation (``exact.best_allocation``);
* ``even``: each zone split evenly over the convs;
* ``flops-share``: the planner's default, each zone split in proportion to the convs' FLOPs;
* ``td3`` / ``ddpg``: a trained policy (``policy.py``), the shipped one of the model, or the one at
  PATH in ``td3:PATH`` (``resolve``). ``learned`` is True: the allocator service checks a learned
  policy against the exact allocator before serving it. The shipped policy preferred is the
  speed-aware one (extended observation: it reads each server's measured speed and link rate),
  the paper-observation one when only that ships.

Adding a policy: a class here with its entry in ``ALLOC_POLICIES`` and its name in
``type_aliases.AllocPolicyName`` (settings and the CLI take that ``Literal``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgesplit.alloc.cost import AllocProblem, AllocSplit, IntArray, Objective, even_allocation
from edgesplit.errors import EdgesplitError, InvalidInput
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server
from edgesplit.registry import Registry
from edgesplit.type_aliases import AllocPolicyName

if TYPE_CHECKING:
    from edgesplit.alloc.exact import AllocResult
    from edgesplit.alloc.policy import LoadedPolicy


@dataclass
class AllocRequest:
    """What a policy allocates: the model, the servers (measured), the problem built on them and the
    objective; ``exact()`` runs the exact allocator once, on first use."""

    spec: ModelSpec
    servers: Sequence[Server]
    problem: AllocProblem
    objective: Objective = "sum"
    _exact: AllocResult | None = field(default=None, repr=False)

    def exact(self) -> AllocResult:
        """The exact allocator's result for this problem (computed on first call)."""
        if self._exact is None:
            from edgesplit.alloc.exact import best_allocation

            self._exact = best_allocation(self.problem, self.objective)
        return self._exact

    @property
    def exact_known(self) -> bool:
        return self._exact is not None


class AllocPolicy(ABC):
    """An allocation policy (module docstring). ``learned``: a trained policy, which may be unavailable
    for a model or a cluster shape (``allocation`` then raises a domain error)."""

    name: AllocPolicyName
    learned: bool = False

    @property
    def label(self) -> str:
        """How the policy is named in reports: its name, ``algo:PATH`` for a trained policy's file."""
        return self.name

    def split_for(self, spec: ModelSpec, split: AllocSplit | None) -> AllocSplit:
        """The split family to allocate for: the one asked, else the policy's own, else ``edgesplit``."""
        return split or "edgesplit"

    @abstractmethod
    def allocation(self, request: AllocRequest) -> IntArray:
        """The allocation ``alloc[m, i]`` of the request's zone (eq. 5d/5f)."""

    def at(self, path: str | Path) -> AllocPolicy:
        """This policy read from a file (``name:PATH``); only a learned policy has one."""
        raise InvalidInput(f"policy {self.name!r} takes no file; only {', '.join(learned_names())} do")


class ExactPolicy(AllocPolicy):
    name: AllocPolicyName = "exact"

    def allocation(self, request: AllocRequest) -> IntArray:
        return request.exact().alloc


class EvenPolicy(AllocPolicy):
    name: AllocPolicyName = "even"

    def allocation(self, request: AllocRequest) -> IntArray:
        return even_allocation(request.problem.zone, request.problem.n_stages)


class FlopsSharePolicy(AllocPolicy):
    name: AllocPolicyName = "flops-share"

    def allocation(self, request: AllocRequest) -> IntArray:
        from edgesplit.alloc.exact import flops_share_allocation

        return flops_share_allocation(request.problem)


class TrainedPolicy(AllocPolicy):
    """A TD3 or DDPG policy: the shipped one of each model (speed-aware first), or the file ``path``.

    Loaded policies (and a failure to find one) are cached per model and split family."""

    learned = True

    def __init__(self, name: AllocPolicyName, path: Path | None = None) -> None:
        self.name = name
        self.path = path
        self._loaded: dict[tuple[str, str | None], LoadedPolicy | EdgesplitError] = {}

    @property
    def label(self) -> str:
        return self.name if self.path is None else f"{self.name}:{self.path}"

    def at(self, path: str | Path) -> AllocPolicy:
        return TrainedPolicy(self.name, Path(path))

    def load(self, spec: ModelSpec, split: AllocSplit | None = None) -> LoadedPolicy:
        """The policy for ``spec`` (ModelNotFound / InvalidInput when there is none or it is unfit)."""
        key = (spec.name, split)
        if key not in self._loaded:
            try:
                self._loaded[key] = self._find(spec, split)
            except EdgesplitError as e:
                self._loaded[key] = e
        loaded = self._loaded[key]
        if isinstance(loaded, EdgesplitError):
            raise loaded
        return loaded

    def _find(self, spec: ModelSpec, split: AllocSplit | None) -> LoadedPolicy:
        from edgesplit.alloc.policy import load_policy, shipped_path, shipped_policy

        if self.path is not None:
            return load_policy(self.path, self.name)
        family = split or "edgesplit"
        for obs in ("extended", "paper"):
            if shipped_path(spec.name, self.name, obs, family).is_file():
                return shipped_policy(spec.name, self.name, obs, family)
        return shipped_policy(spec.name, self.name, "extended", family)  # raises with how to train one

    def split_for(self, spec: ModelSpec, split: AllocSplit | None) -> AllocSplit:
        if split is not None:
            return split
        return self.load(spec).meta.get("split", "edgesplit")  # type: ignore[no-any-return]

    def allocation(self, request: AllocRequest) -> IntArray:
        from edgesplit.alloc.policy import policy_allocation

        problem = request.problem
        loaded = self.load(request.spec, None if self.path is not None else problem.split)
        return policy_allocation(loaded, request.spec, request.servers, problem.zone)


ALLOC_POLICIES: Registry[AllocPolicyName, AllocPolicy] = Registry(
    "policy", {p.name: p for p in (ExactPolicy(), EvenPolicy(), FlopsSharePolicy(), TrainedPolicy("td3"),
                                   TrainedPolicy("ddpg"))}, error=InvalidInput)


def learned_names() -> list[str]:
    return [name for name, p in ALLOC_POLICIES.items() if p.learned]


def policies_help() -> str:
    """``exact | even | flops-share | td3 | ddpg | td3:PATH | ddpg:PATH`` for a CLI option's help."""
    return " | ".join([*ALLOC_POLICIES.names, *(f"{n}:PATH" for n in learned_names())])


def resolve(text: str, path: str | Path | None = None) -> AllocPolicy:
    """The policy named ``text`` (``name`` or ``name:PATH``), read from ``path`` when given.

    InvalidInput names the policies known for an unknown name."""
    name, _, inline = text.partition(":")
    if name not in ALLOC_POLICIES.names:
        raise InvalidInput(f"unknown policy {text!r}; expected {policies_help()}")
    policy = ALLOC_POLICIES[name]
    chosen = inline or path
    return policy.at(chosen) if chosen else policy

