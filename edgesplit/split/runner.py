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
from edgesplit.split.slices import conv_groups, part_total, run_group

Mode = Literal["rows", "rows-fused", "kernel-rows", "channels"]
MODES: tuple[Mode, ...] = ("rows", "rows-fused", "kernel-rows", "channels")


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
    return [(0, spec.n_edge)] if mode == "rows-fused" else conv_groups(spec)


@torch.no_grad()
def split_forward(module: nn.Sequential, spec: ModelSpec, mode: Mode, servers: int,
                  x: torch.Tensor) -> SplitRun:
    """Edge part of ``module`` on input ``x`` with every group split evenly across ``servers``.

    kernel-rows uses at most kernel-height servers per conv (the paper's limit: b parts); rows and
    channels give empty slices to servers beyond the units available.
    """
    if servers < 1:
        raise InvalidPlan(f"a split needs at least 1 server, got {servers}")
    if mode not in MODES:
        raise InvalidPlan(f"unknown strategy {mode!r}; expected one of {', '.join(MODES)}")
    strategy = "rows" if mode == "rows-fused" else mode
    used: list[int] = []
    y = x
    for start, stop in groups_for(spec, mode):
        group_strategy = strategy
        if strategy != "rows" and not isinstance(spec.layers[start], Conv2d):
            group_strategy = "rows"  # a leading pool has no kernel rows to split: split its rows
        total = part_total(spec, start, stop, group_strategy)  # type: ignore[arg-type]
        k = min(servers, total) if group_strategy == "kernel-rows" else servers
        used.append(k)
        y = run_group(module, spec, start, stop, group_strategy, even_parts(total, k), y)  # type: ignore[arg-type]
    return SplitRun(y, used)
