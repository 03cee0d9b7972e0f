"""Whole-edge split inference in one process: every group of the edge part split across K servers.

Used by ``edgesplit verify`` and ``edgesplit accuracy`` (and the simulator's fig. 9) to measure that
split inference equals the unsplit module.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import Conv2d, ModelSpec
from edgesplit.registry import Registry
from edgesplit.split.slices import conv_groups, part_total, run_group
from edgesplit.split.strategies import STRATEGY
from edgesplit.type_aliases import Strategy

Mode = Literal["rows", "rows-fused", "kernel-rows", "channels"]


class VerifyMode(NamedTuple):
    """A way to split the whole edge part: a strategy, and all layers fused into one group or one
    conv per group."""

    strategy: Strategy
    fused: bool = False


VERIFY_MODES: Registry[Mode, VerifyMode] = Registry("strategy", {
    "rows": VerifyMode("rows"), "rows-fused": VerifyMode("rows", fused=True),
    "kernel-rows": VerifyMode("kernel-rows"), "channels": VerifyMode("channels")})
MODES: tuple[Mode, ...] = VERIFY_MODES.names


class SplitRun(NamedTuple):
    """The merged edge output and the number of servers each group actually used."""

    output: torch.Tensor
    servers_used: list[int]


def even_parts(total: int, k: int) -> list[int]:
    """``total`` units over ``k`` servers as evenly as possible (the first ones get the remainder)."""
    if k < 1:
        raise InvalidPlan(f"a split needs at least 1 server, got {k}")
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def groups_for(spec: ModelSpec, mode: Mode) -> list[tuple[int, int]]:
    """Group boundaries: the whole edge part for ``rows-fused``, else one conv per group."""
    return [(0, spec.n_edge)] if VERIFY_MODES[mode].fused else conv_groups(spec)


@torch.no_grad()
def split_forward(module: nn.Sequential, spec: ModelSpec, mode: Mode, servers: int,
                  x: torch.Tensor) -> SplitRun:
    """Edge part of ``module`` on input ``x`` with every group split evenly across ``servers``.

    kernel-rows uses at most kernel-height servers per conv (the paper's limit: b parts); rows and
    channels give empty slices to servers beyond the units available.
    """
    if servers < 1:
        raise InvalidPlan(f"a split needs at least 1 server, got {servers}")
    strategy = VERIFY_MODES[mode].strategy
    used: list[int] = []
    y = x
    for start, stop in groups_for(spec, mode):
        # a leading pool has no kernel rows (or conv filters) to split: split its rows
        group: Strategy = strategy if isinstance(spec.layers[start], Conv2d) else "rows"
        total = part_total(spec, start, stop, group)
        k = min(servers, total) if STRATEGY[group].caps_servers else servers
        used.append(k)
        y = run_group(module, spec, start, stop, group, even_parts(total, k), y)
    return SplitRun(y, used)
