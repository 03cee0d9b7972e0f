"""Every type shared across edgesplit's packages, in one place (SB3's ``common/type_aliases.py``).

The names of a choice (a slicing strategy, a planner family, a serving mode, a served configuration)
are ``Literal`` types, so settings (pydantic) and the CLI refuse an unknown name and mypy checks every
use; what a name *does* lives in the one object its registry maps it to
(``edgesplit.registry.Registry``): ``split.strategies.STRATEGY``, ``plan.planner.PLANNER_FAMILIES``,
``plan.modes.SERVING_MODES`` and ``plan.modes.SERVED``. A test checks that each ``Literal`` and its
registry name the same choices (``tests/unit/test_registries.py``).
"""

from __future__ import annotations

from typing import Literal

Rows = tuple[int, int]
"""A half-open range of units ``[a, b)``: rows of a map, kernel rows or channels."""

Strategy = Literal["rows", "kernel-rows", "channels"]
"""How one group of edge layers is sliced across servers (``split.strategies``)."""

Split = Literal["edgesplit", "paper"]
"""A planner family: the paper's split (kernel-rows, eq. 7 + Algorithm 1) or ours (``plan.planner``)."""

ServingModeName = Literal["split", "no-split", "dads"]
"""How the orchestrator serves a model (``plan.modes``): split by a plan, whole, or cut for DADS."""

PipelineMode = Literal["async", "lockstep"]
"""How a split route's stages advance: as soon as they can, or all together (the paper's fig. 2)."""

ServedName = Literal["no-split", "dads", "paper", "edgesplit"]
"""A served configuration that a measurement and its prediction name: serving mode, planner family and
pipeline together (``plan.modes.SERVED``)."""

Quotas = dict[str, dict[int, int]]
"""One executor's sub-zone threads: ``{model: {stage: threads}}`` (sub-zone k = stage k of a plan)."""

AllocPolicyName = Literal["exact", "even", "flops-share", "td3", "ddpg"]
"""Where a zone's sub-zone threads come from (``alloc.registry.ALLOC_POLICIES``): the exact allocator,
an even or FLOPs-share split, or a trained TD3/DDPG policy."""
