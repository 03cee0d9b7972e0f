"""Exact slicing of a group of edge layers across servers, and the merge.

What each strategy does (``rows``, ``kernel-rows``, ``channels``; DESIGN.md section 1) is its object in
``edgesplit.split.strategies.STRATEGY``; the functions here check a group, cut it into one slice per
server, compute a slice and merge the outputs by asking that object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.split.geometry import split_counts
from edgesplit.split.ops import apply_window
from edgesplit.split.strategies import STRATEGIES, STRATEGY, Slice
from edgesplit.type_aliases import Strategy

__all__ = ["STRATEGIES", "Slice", "Strategy", "apply_window", "check_group", "compute_slice", "conv_groups",
           "crop_input", "make_slices", "merge", "part_total", "run_group"]


def check_group(spec: ModelSpec, start: int, stop: int, strategy: Strategy) -> None:
    """Raise InvalidPlan unless ``[start, stop)`` is a valid edge group for ``strategy``."""
    if not 0 <= start < stop <= spec.n_edge:
        raise InvalidPlan(f"layer range [{start}, {stop}) is not inside the edge layers [0, {spec.n_edge})")
    STRATEGY[strategy].check(spec, start, stop)


def part_total(spec: ModelSpec, start: int, stop: int, strategy: Strategy) -> int:
    """How many units a group splits into: output rows, kernel rows or output channels."""
    check_group(spec, start, stop, strategy)
    return STRATEGY[strategy].total(spec, start, stop)


def make_slices(spec: ModelSpec, start: int, stop: int, strategy: Strategy,
                parts: Sequence[int]) -> list[Slice]:
    """One slice per server; ``parts[m]`` units (rows, kernel rows or channels) for server m."""
    check_group(spec, start, stop, strategy)
    if not parts:
        raise InvalidPlan("a split needs at least 1 server, got 0")
    how = STRATEGY[strategy]
    total = how.total(spec, start, stop)
    if sum(parts) != total or min(parts) < 0:
        raise InvalidPlan(f"{strategy} parts {list(parts)} must be >= 0 and sum to {total}")
    return [how.make(spec, start, stop, rng) for rng in split_counts(total, parts)]


def crop_input(x: torch.Tensor, sl: Slice) -> torch.Tensor:
    """The part of the group's full input map (N, C, H, W) that the server of ``sl`` receives."""
    x = x[:, :, sl.in_rows[0] : sl.in_rows[1]]
    if sl.in_channels is not None:
        x = x[:, sl.in_channels[0] : sl.in_channels[1]]
    return x


@torch.no_grad()
def compute_slice(module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
    """Compute one slice on a server. ``x`` holds exactly ``sl.in_rows`` of the group's input."""
    want = sl.in_shape(spec, x.shape[0])
    if tuple(x.shape) != want:
        raise ValueError(f"slice input has shape {list(x.shape)}, expected {list(want)}")
    if sl.empty:
        return x.new_zeros(sl.out_shape(spec, x.shape[0]))
    return sl.how.compute(module, spec, sl, x)


@torch.no_grad()
def merge(module: nn.Sequential, spec: ModelSpec, slices: Sequence[Slice],
          outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Merge the servers' outputs into the group's output (the controller's side of a stage)."""
    return slices[0].how.merge(module, spec, slices, outputs)


Runner = Callable[[int, Slice, torch.Tensor], torch.Tensor]


def run_group(module: nn.Sequential, spec: ModelSpec, start: int, stop: int, strategy: Strategy,
              parts: Sequence[int], x: torch.Tensor, runner: Runner | None = None) -> torch.Tensor:
    """Split a group, compute each slice (locally, or with ``runner(server, slice, input)``), merge."""
    slices = make_slices(spec, start, stop, strategy, parts)
    run = runner or (lambda _m, s, t: compute_slice(module, spec, s, t))
    outs = [run(m, s, crop_input(x, s)) for m, s in enumerate(slices)]
    return merge(module, spec, slices, outs)


def conv_groups(spec: ModelSpec) -> list[tuple[int, int]]:
    """The paper's grouping: one conv per group, with the per-element layers and pools after it."""
    starts = [0] + [i for i in spec.conv_indices() if i > 0]
    ends = [*starts[1:], spec.n_edge]
    return list(zip(starts, ends, strict=True))
