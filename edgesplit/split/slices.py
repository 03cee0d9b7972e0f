"""Exact slicing of a group of edge layers across servers, and the merge.

Three strategies (DESIGN.md section 1):

* ``rows``: each server computes a band of output rows of the group ``[start, stop)``; it receives the
  input rows the band needs (halo included, grown backwards through the group) and applies the
  map-edge padding itself with each layer's own semantics. Merge = concatenate on H.
* ``kernel-rows``: the paper's section 3.3. The group is one conv (plus per-element layers run after
  the merge); server m gets kernel rows ``[e, l)`` and input rows ``[e, h-(b-l))`` (generalised to
  stride, padding and dilation), and returns a full-size partial sum without bias. Merge = add, then
  bias, then the rest of the group.
* ``channels``: the group's first conv is split by output channels; the per-channel layers after it
  run on the same server. Merge = concatenate on C.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import AvgPool2d, Conv2d, MaxPool2d, ModelSpec, is_window
from edgesplit.split.geometry import Rows, clip, group_needs, split_counts

Strategy = Literal["rows", "kernel-rows", "channels"]
STRATEGIES: tuple[Strategy, ...] = ("rows", "kernel-rows", "channels")


@dataclass(frozen=True)
class Slice:
    """What one server computes for one group. Rows are in the coordinates of the unpadded maps.

    ``in_rows`` are the rows of the group's input the server receives (all channels, full width);
    ``pad`` the rows of padding above and below them at the group's first layer. ``out_rows`` are
    the group-output rows it returns (all rows for kernel-rows and channels). ``kernel_rows`` is
    ``(e, l)`` for kernel-rows, ``channels`` ``(c0, c1)`` for channels; ``in_channels`` the input
    channels received when not all are (a channel split of a group without conv, e.g. a lone pool).
    """

    strategy: Strategy
    start: int
    stop: int
    in_rows: Rows
    pad: tuple[int, int]
    out_rows: Rows
    kernel_rows: Rows | None = None
    channels: Rows | None = None
    in_channels: Rows | None = None

    @property
    def empty(self) -> bool:
        if self.strategy == "rows":
            return self.out_rows[1] <= self.out_rows[0]
        part = self.kernel_rows if self.strategy == "kernel-rows" else self.channels
        return part is None or part[1] <= part[0]

    def out_shape(self, spec: ModelSpec, batch: int = 1) -> tuple[int, int, int, int]:
        """Shape of the tensor the server returns for this slice."""
        if self.strategy == "kernel-rows":
            c, h, w = spec.shapes()[self.start + 1]
            return (batch, c, h, w)
        c, _, w = spec.shapes()[self.stop]
        if self.strategy == "channels":
            assert self.channels is not None
            c = self.channels[1] - self.channels[0]
        return (batch, c, self.out_rows[1] - self.out_rows[0], w)

    def in_shape(self, spec: ModelSpec, batch: int = 1) -> tuple[int, int, int, int]:
        """Shape of the tensor the server receives for this slice."""
        c, _, w = spec.shapes()[self.start]
        if self.in_channels is not None:
            c = self.in_channels[1] - self.in_channels[0]
        return (batch, c, self.in_rows[1] - self.in_rows[0], w)


def check_group(spec: ModelSpec, start: int, stop: int, strategy: Strategy) -> None:
    """Raise InvalidPlan unless ``[start, stop)`` is a valid edge group for ``strategy``."""
    if not 0 <= start < stop <= spec.n_edge:
        raise InvalidPlan(f"layer range [{start}, {stop}) is not inside the edge layers [0, {spec.n_edge})")
    if strategy not in STRATEGIES:
        raise InvalidPlan(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if strategy == "rows":
        return
    convs = [i for i in range(start, stop) if isinstance(spec.layers[i], Conv2d)]
    if strategy == "kernel-rows" and convs != [start]:
        raise InvalidPlan(f"kernel-rows needs a group that starts with its only conv; [{start}, {stop}) "
                          f"has convs at {convs}")
    if strategy == "channels" and (len(convs) > 1 or (convs and convs[0] != start)):
        raise InvalidPlan(f"channels needs a group with at most one conv, first; [{start}, {stop}) has "
                          f"convs at {convs}")


def part_total(spec: ModelSpec, start: int, stop: int, strategy: Strategy) -> int:
    """How many units a group splits into: output rows, kernel rows or output channels."""
    check_group(spec, start, stop, strategy)
    if strategy == "rows":
        return spec.shapes()[stop][1]
    if strategy == "kernel-rows":
        layer = spec.layers[start]
        assert isinstance(layer, Conv2d)  # check_group made sure
        return layer.kernel[0]
    return spec.shapes()[stop][0]


def make_slices(spec: ModelSpec, start: int, stop: int, strategy: Strategy,
                parts: Sequence[int]) -> list[Slice]:
    """One slice per server; ``parts[m]`` units (rows, kernel rows or channels) for server m."""
    check_group(spec, start, stop, strategy)
    if not parts:
        raise InvalidPlan("a split needs at least 1 server, got 0")
    total = part_total(spec, start, stop, strategy)
    if sum(parts) != total or min(parts) < 0:
        raise InvalidPlan(f"{strategy} parts {list(parts)} must be >= 0 and sum to {total}")
    ranges = split_counts(total, parts)
    h_in = spec.shapes()[start][1]
    out_h = spec.shapes()[stop][1]
    slices = []
    for rng in ranges:
        if strategy == "rows":
            first = group_needs(spec, start, stop, rng)[0]
            slices.append(Slice(strategy, start, stop, first.rows, (first.pad_top, first.pad_bottom), rng))
        elif strategy == "kernel-rows":
            need = clip(_kernel_rows_in_range(spec.layers[start], rng, spec.shapes()[start + 1][1]), h_in)
            slices.append(Slice(strategy, start, stop, need.rows, (need.pad_top, need.pad_bottom),
                                (0, spec.shapes()[start + 1][1]), kernel_rows=rng))
        else:
            full = group_needs(spec, start, stop, (0, out_h))[0]
            has_conv = isinstance(spec.layers[start], Conv2d)
            slices.append(Slice(strategy, start, stop, full.rows, (full.pad_top, full.pad_bottom),
                                (0, out_h), channels=rng, in_channels=None if has_conv else rng))
    return slices


def _kernel_rows_in_range(layer: object, kernel_rows: Rows, h_out: int) -> Rows:
    """Input rows that kernel rows ``[e, l)`` read over all ``h_out`` output rows (paper: [e, h-(b-l)))."""
    assert isinstance(layer, Conv2d)
    e, l = kernel_rows
    s, p, d = layer.stride[0], layer.padding[0], layer.dilation[0]
    if l <= e:
        return (0, 0)
    return (e * d - p, (h_out - 1) * s - p + d * (l - 1) + 1)


def crop_input(x: torch.Tensor, sl: Slice) -> torch.Tensor:
    """The part of the group's full input map (N, C, H, W) that the server of ``sl`` receives."""
    x = x[:, :, sl.in_rows[0] : sl.in_rows[1]]
    if sl.in_channels is not None:
        x = x[:, sl.in_channels[0] : sl.in_channels[1]]
    return x


def _conv(module: nn.Sequential, index: int) -> nn.Conv2d:
    conv = module[index]
    if not isinstance(conv, nn.Conv2d):
        raise InvalidPlan(f"layer {index} of the module is {type(conv).__name__}, expected Conv2d")
    return conv


def _pad_rows(x: torch.Tensor, top: int, bottom: int, value: float) -> torch.Tensor:
    if top == 0 and bottom == 0:
        return x
    return F.pad(x, (0, 0, top, bottom), value=value)


def apply_window(mod: nn.Module, layer: Conv2d | MaxPool2d | AvgPool2d, x: torch.Tensor, top: int,
                 bottom: int, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """One window layer on a band of rows, with ``top``/``bottom`` rows of the layer's own padding.

    Rows are padded here (zeros for conv and avg-pool, -inf for max-pool); columns keep the layer's
    own padding. Avg-pool counts padded cells like torch's default ``count_include_pad=True``.
    """
    pw = layer.padding[1]
    # equal padding above and below, within the layer's own (a band against neither or both map
    # edges, e.g. a whole map): the operator pads itself, the same values without a padded copy
    native = top == bottom <= layer.padding[0]
    pad = (top, pw) if native else (0, pw)
    if not native:
        fill = float("-inf") if isinstance(layer, MaxPool2d) else 0.0
        x = _pad_rows(x, top, bottom, fill)
    if isinstance(layer, Conv2d):
        assert isinstance(mod, nn.Conv2d)
        w = mod.weight if weight is None else weight
        b = mod.bias if weight is None else bias
        return F.conv2d(x, w, b, layer.stride, pad, layer.dilation)
    if isinstance(layer, MaxPool2d):
        return F.max_pool2d(x, layer.kernel, layer.stride, pad, layer.dilation)
    return F.avg_pool2d(x, layer.kernel, layer.stride, pad, count_include_pad=True)


@torch.no_grad()
def compute_slice(module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
    """Compute one slice on a server. ``x`` holds exactly ``sl.in_rows`` of the group's input."""
    want = sl.in_shape(spec, x.shape[0])
    if tuple(x.shape) != want:
        raise ValueError(f"slice input has shape {list(x.shape)}, expected {list(want)}")
    if sl.empty:
        return x.new_zeros(sl.out_shape(spec, x.shape[0]))
    if sl.strategy == "rows":
        return _compute_rows(module, spec, sl, x)
    if sl.strategy == "kernel-rows":
        assert sl.kernel_rows is not None
        layer = spec.layers[sl.start]
        assert isinstance(layer, Conv2d)
        e, l = sl.kernel_rows
        w = _conv(module, sl.start).weight[:, :, e:l]
        return apply_window(module[sl.start], layer, x, *sl.pad, weight=w, bias=None)
    return _compute_channels(module, spec, sl, x)


def _compute_rows(module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
    needs = group_needs(spec, sl.start, sl.stop, sl.out_rows)
    shapes = spec.shapes()
    for j, i in enumerate(range(sl.start, sl.stop)):
        layer = spec.layers[i]
        rows_out = needs[j + 1].rows if j + 1 < len(needs) else sl.out_rows
        if rows_out[1] <= rows_out[0]:
            # a band that lies wholly in a later layer's padding: nothing real to compute here
            c, _, w = shapes[i + 1]
            x = x.new_zeros((x.shape[0], c, 0, w))
        elif is_window(layer):
            x = apply_window(module[i], layer, x, needs[j].pad_top, needs[j].pad_bottom)  # type: ignore[arg-type]
        else:
            x = module[i](x)
    return x


def _compute_channels(module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
    assert sl.channels is not None
    c0, c1 = sl.channels
    needs = group_needs(spec, sl.start, sl.stop, sl.out_rows)
    for j, i in enumerate(range(sl.start, sl.stop)):
        layer = spec.layers[i]
        top, bottom = needs[j].pad_top, needs[j].pad_bottom
        if isinstance(layer, Conv2d):
            conv = _conv(module, i)
            bias = None if conv.bias is None else conv.bias[c0:c1]
            x = apply_window(conv, layer, x, top, bottom, weight=conv.weight[c0:c1], bias=bias)
        elif is_window(layer):
            x = apply_window(module[i], layer, x, top, bottom)  # type: ignore[arg-type]
        else:
            x = module[i](x)
    return x


@torch.no_grad()
def merge(module: nn.Sequential, spec: ModelSpec, slices: Sequence[Slice],
          outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Merge the servers' outputs into the group's output (the controller's side of a stage)."""
    strategy = slices[0].strategy
    if strategy == "rows":
        return torch.cat(list(outputs), dim=2)
    if strategy == "channels":
        return torch.cat(list(outputs), dim=1)
    sl = slices[0]
    parts = [o for s, o in zip(slices, outputs, strict=True) if not s.empty]
    y = torch.stack(parts).sum(dim=0)
    conv = _conv(module, sl.start)
    if conv.bias is not None:
        y = y + conv.bias.view(1, -1, 1, 1)
    for i in range(sl.start + 1, sl.stop):
        y = module[i](y)
    return y


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
