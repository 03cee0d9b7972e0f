"""The slicing strategies, one object each, and their registry ``STRATEGY`` (DESIGN.md section 1).

* ``rows``: each server computes a band of output rows of the group ``[start, stop)``; it receives the
  input rows the band needs (halo included, grown backwards through the group) and applies the
  map-edge padding itself with each layer's own semantics. Merge = concatenate on H.
* ``kernel-rows``: the paper's section 3.3. The group is one conv (plus per-element layers run after
  the merge); server m gets kernel rows ``[e, l)`` and input rows ``[e, h-(b-l))`` (generalised to
  stride, padding and dilation), and returns a full-size partial sum without bias. Merge = add, then
  bias, then the rest of the group.
* ``channels``: the group's first conv is split by output channels; the per-channel layers after it
  run on the same server. Merge = concatenate on C.

Everything that depends on the strategy is a method of its object: which groups it takes, how many
units a group has, the slice of a range of units, what a server computes and returns, the merge, the
FLOPs a slice costs (the one count the latency model and the executors share) and how a sub-zone's
workers cut a slice into bands. Adding a strategy = a class here, its name in
``type_aliases.Strategy`` and its vectorised unit loads in ``plan.search``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import Conv2d, ModelSpec, Shape, is_window
from edgesplit.registry import Registry
from edgesplit.split.geometry import Rows, clip, group_needs, split_counts
from edgesplit.split.ops import apply_window, conv_of
from edgesplit.split.pause import pause_point
from edgesplit.type_aliases import Strategy


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
    def how(self) -> SlicingStrategy:
        """The strategy object of this slice."""
        return STRATEGY[self.strategy]

    @property
    def empty(self) -> bool:
        return self.how.empty(self)

    def out_shape(self, spec: ModelSpec, batch: int = 1) -> tuple[int, int, int, int]:
        """Shape of the tensor the server returns for this slice."""
        return self.how.out_shape(self, spec.shapes(), batch)

    def in_shape(self, spec: ModelSpec, batch: int = 1) -> tuple[int, int, int, int]:
        """Shape of the tensor the server receives for this slice."""
        c, _, w = spec.shapes()[self.start]
        if self.in_channels is not None:
            c = self.in_channels[1] - self.in_channels[0]
        return (batch, c, self.in_rows[1] - self.in_rows[0], w)


@dataclass(frozen=True)
class Part:
    """One worker's share of a slice: its sub-slice, where its input starts inside the slice's input
    (``in_at`` along H, or along C for a channel split of a group without conv), and where its output
    goes (``at`` along ``dim``)."""

    slice: Slice
    dim: int
    at: int
    in_at: int = 0

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the slice's input ``x`` (N, C, H, W) this sub-slice reads (a view)."""
        sl = self.slice
        if sl.in_channels is not None:
            return x.narrow(1, self.in_at, sl.in_channels[1] - sl.in_channels[0])
        return x.narrow(2, self.in_at, sl.in_rows[1] - sl.in_rows[0])


def _rows_flops(spec: ModelSpec, sl: Slice, per_layer: Sequence[float], shapes: Sequence[Shape],
                channel_share: bool) -> float:
    """Each layer's FLOPs times the share of its output the slice computes: the rows it really
    computes (``group_needs``: the halo included, rows no later layer reads left out) and, for a
    channel split, its channels."""
    needs = group_needs(spec, sl.start, sl.stop, sl.out_rows)
    total = 0.0
    for j, i in enumerate(range(sl.start, sl.stop)):
        out = needs[j + 1].rows if j + 1 < len(needs) else sl.out_rows
        frac = (out[1] - out[0]) / shapes[i + 1][1]
        if channel_share:
            assert sl.channels is not None
            frac *= (sl.channels[1] - sl.channels[0]) / shapes[i + 1][0]
        total += per_layer[i] * frac
    return total


def _run_layers(module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor,
                channels: Rows | None = None) -> torch.Tensor:
    """The group's layers on the slice's input band ``x``, each window layer with the padding rows it
    sits against (``group_needs``); ``channels``: the conv computes only those output channels."""
    needs = group_needs(spec, sl.start, sl.stop, sl.out_rows)
    shapes = spec.shapes()
    for j, i in enumerate(range(sl.start, sl.stop)):
        pause_point()  # a bulk thread may wait here while urgent work computes (``split.pause``)
        layer = spec.layers[i]
        top, bottom = needs[j].pad_top, needs[j].pad_bottom
        rows_out = needs[j + 1].rows if j + 1 < len(needs) else sl.out_rows
        if channels is None and rows_out[1] <= rows_out[0]:
            # a band that lies wholly in a later layer's padding: nothing real to compute here
            c, _, w = shapes[i + 1]
            x = x.new_zeros((x.shape[0], c, 0, w))
        elif channels is not None and isinstance(layer, Conv2d):
            conv = conv_of(module, i)
            bias = None if conv.bias is None else conv.bias[channels[0] : channels[1]]
            x = apply_window(conv, layer, x, top, bottom, weight=conv.weight[channels[0] : channels[1]],
                             bias=bias)
        elif is_window(layer):
            x = apply_window(module[i], layer, x, top, bottom)  # type: ignore[arg-type]
        else:
            x = module[i](x)
    return x


def _bands(first: int, last: int, k: int) -> list[Rows]:
    """``[first, last)`` cut into min(k, size) near-equal consecutive bands (larger ones first)."""
    n = last - first
    k = max(1, min(k, n))
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return [(first + a, first + b) for a, b in split_counts(n, sizes)]


class SlicingStrategy(ABC):
    """What a strategy does (the module docstring); one instance per strategy, in ``STRATEGY``.

    ``unit_field``: the ``Slice`` field holding a slice's units (and the wire's parameter for them);
    ``caps_servers``: at most as many servers as the group has units take part (kernel-rows: the
    paper's ``b`` parts), where the others would get empty slices.
    """

    name: Strategy
    unit_field: str
    caps_servers: bool = False

    def units(self, sl: Slice) -> Rows | None:
        """The slice's units: its output rows, kernel rows or channels."""
        value: Rows | None = getattr(sl, self.unit_field)
        return value

    def empty(self, sl: Slice) -> bool:
        units = self.units(sl)
        return units is None or units[1] <= units[0]

    def check(self, spec: ModelSpec, start: int, stop: int) -> None:
        """Raise InvalidPlan unless the strategy can split the (in-range) group ``[start, stop)``."""
        return None  # the default: every in-range group

    @abstractmethod
    def total(self, spec: ModelSpec, start: int, stop: int) -> int:
        """How many units the group splits into."""

    @abstractmethod
    def make(self, spec: ModelSpec, start: int, stop: int, units: Rows) -> Slice:
        """The slice computing ``units`` of the group."""

    def out_shape(self, sl: Slice, shapes: Sequence[Shape], batch: int) -> tuple[int, int, int, int]:
        """Shape of what the server returns, from the model's map shapes."""
        c, _, w = shapes[sl.stop]
        return (batch, c, sl.out_rows[1] - sl.out_rows[0], w)

    @abstractmethod
    def compute(self, module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
        """The slice on a server; ``x`` holds exactly its input rows (and channels)."""

    @abstractmethod
    def merge(self, module: nn.Sequential, spec: ModelSpec, slices: Sequence[Slice],
              outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The group's output from the servers' outputs (the controller's side of a stage)."""

    @abstractmethod
    def flops(self, spec: ModelSpec, sl: Slice, per_layer: Sequence[float], shapes: Sequence[Shape]) -> float:
        """FLOPs the server spends on the (non-empty) slice, batch 1 (multiply-add = 2)."""

    @abstractmethod
    def band_range(self, spec: ModelSpec, sl: Slice) -> Rows:
        """The range a sub-zone's workers cut into bands."""

    @abstractmethod
    def band(self, spec: ModelSpec, sl: Slice, band: Rows) -> Part:
        """The part of ``sl`` that computes ``band`` of ``band_range``: itself a valid slice."""


class RowsStrategy(SlicingStrategy):
    name: Strategy = "rows"
    unit_field = "out_rows"

    def total(self, spec: ModelSpec, start: int, stop: int) -> int:
        return spec.shapes()[stop][1]

    def make(self, spec: ModelSpec, start: int, stop: int, units: Rows) -> Slice:
        first = group_needs(spec, start, stop, units)[0]
        return Slice(self.name, start, stop, first.rows, (first.pad_top, first.pad_bottom), units)

    def compute(self, module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
        return _run_layers(module, spec, sl, x)

    def merge(self, module: nn.Sequential, spec: ModelSpec, slices: Sequence[Slice],
              outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(outputs), dim=2)

    def flops(self, spec: ModelSpec, sl: Slice, per_layer: Sequence[float], shapes: Sequence[Shape]) -> float:
        return _rows_flops(spec, sl, per_layer, shapes, channel_share=False)

    def band_range(self, spec: ModelSpec, sl: Slice) -> Rows:
        return sl.out_rows

    def band(self, spec: ModelSpec, sl: Slice, band: Rows) -> Part:
        sub = self.make(spec, sl.start, sl.stop, band)
        return Part(sub, 2, band[0] - sl.out_rows[0], sub.in_rows[0] - sl.in_rows[0])


def _kernel_rows_in_range(layer: object, kernel_rows: Rows, h_out: int) -> Rows:
    """Input rows that kernel rows ``[e, l)`` read over all ``h_out`` output rows (paper: [e, h-(b-l)))."""
    assert isinstance(layer, Conv2d)
    e, l = kernel_rows
    s, p, d = layer.stride[0], layer.padding[0], layer.dilation[0]
    if l <= e:
        return (0, 0)
    return (e * d - p, (h_out - 1) * s - p + d * (l - 1) + 1)


class KernelRowsStrategy(SlicingStrategy):
    name: Strategy = "kernel-rows"
    unit_field = "kernel_rows"
    caps_servers = True

    def check(self, spec: ModelSpec, start: int, stop: int) -> None:
        convs = [i for i in range(start, stop) if isinstance(spec.layers[i], Conv2d)]
        if convs != [start]:
            raise InvalidPlan(f"kernel-rows needs a group that starts with its only conv; [{start}, {stop}) "
                              f"has convs at {convs}")

    def total(self, spec: ModelSpec, start: int, stop: int) -> int:
        layer = spec.layers[start]
        assert isinstance(layer, Conv2d)  # check made sure
        return layer.kernel[0]

    def make(self, spec: ModelSpec, start: int, stop: int, units: Rows) -> Slice:
        h_out = spec.shapes()[start + 1][1]
        need = clip(_kernel_rows_in_range(spec.layers[start], units, h_out), spec.shapes()[start][1])
        return Slice(self.name, start, stop, need.rows, (need.pad_top, need.pad_bottom), (0, h_out),
                     kernel_rows=units)

    def out_shape(self, sl: Slice, shapes: Sequence[Shape], batch: int) -> tuple[int, int, int, int]:
        c, h, w = shapes[sl.start + 1]  # a full-size partial sum of the conv
        return (batch, c, h, w)

    def compute(self, module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
        assert sl.kernel_rows is not None
        layer = spec.layers[sl.start]
        assert isinstance(layer, Conv2d)
        e, l = sl.kernel_rows
        w = conv_of(module, sl.start).weight[:, :, e:l]
        return apply_window(module[sl.start], layer, x, *sl.pad, weight=w, bias=None)

    def merge(self, module: nn.Sequential, spec: ModelSpec, slices: Sequence[Slice],
              outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        sl = slices[0]
        parts = [o for s, o in zip(slices, outputs, strict=True) if not s.empty]
        y = torch.stack(parts).sum(dim=0)
        conv = conv_of(module, sl.start)
        if conv.bias is not None:
            y = y + conv.bias.view(1, -1, 1, 1)
        for i in range(sl.start + 1, sl.stop):
            y = module[i](y)
        return y

    def flops(self, spec: ModelSpec, sl: Slice, per_layer: Sequence[float], shapes: Sequence[Shape]) -> float:
        """The conv's FLOPs times the share of kernel rows times the share of output rows (a band of a
        sub-zone's worker); the layers after the conv run at the controller after the merge."""
        assert sl.kernel_rows is not None
        layer = spec.layers[sl.start]
        assert isinstance(layer, Conv2d)
        frac_k = (sl.kernel_rows[1] - sl.kernel_rows[0]) / layer.kernel[0]
        frac_h = (sl.out_rows[1] - sl.out_rows[0]) / shapes[sl.start + 1][1]
        return per_layer[sl.start] * frac_k * frac_h

    def band_range(self, spec: ModelSpec, sl: Slice) -> Rows:
        return (0, spec.shapes()[sl.start + 1][1])

    def band(self, spec: ModelSpec, sl: Slice, band: Rows) -> Part:
        layer = spec.layers[sl.start]
        assert isinstance(layer, Conv2d) and sl.kernel_rows is not None
        k0, k1 = sl.kernel_rows
        s, p, d = layer.stride[0], layer.padding[0], layer.dilation[0]
        a, b = band
        # output row r of kernel rows [k0, k1) reads input rows r*s - p + d*k0 ... r*s - p + d*(k1-1)
        need = clip((a * s - p + k0 * d, (b - 1) * s - p + (k1 - 1) * d + 1), spec.shapes()[sl.start][1])
        sub = Slice(self.name, sl.start, sl.stop, need.rows, (need.pad_top, need.pad_bottom), band,
                    kernel_rows=sl.kernel_rows)
        return Part(sub, 2, a, need.rows[0] - sl.in_rows[0])


class ChannelsStrategy(SlicingStrategy):
    name: Strategy = "channels"
    unit_field = "channels"

    def check(self, spec: ModelSpec, start: int, stop: int) -> None:
        convs = [i for i in range(start, stop) if isinstance(spec.layers[i], Conv2d)]
        if len(convs) > 1 or (convs and convs[0] != start):
            raise InvalidPlan(f"channels needs a group with at most one conv, first; [{start}, {stop}) has "
                              f"convs at {convs}")

    def total(self, spec: ModelSpec, start: int, stop: int) -> int:
        return spec.shapes()[stop][0]

    def make(self, spec: ModelSpec, start: int, stop: int, units: Rows) -> Slice:
        out_h = spec.shapes()[stop][1]
        full = group_needs(spec, start, stop, (0, out_h))[0]
        has_conv = isinstance(spec.layers[start], Conv2d)
        return Slice(self.name, start, stop, full.rows, (full.pad_top, full.pad_bottom), (0, out_h),
                     channels=units, in_channels=None if has_conv else units)

    def out_shape(self, sl: Slice, shapes: Sequence[Shape], batch: int) -> tuple[int, int, int, int]:
        assert sl.channels is not None
        _, _, w = shapes[sl.stop]
        return (batch, sl.channels[1] - sl.channels[0], sl.out_rows[1] - sl.out_rows[0], w)

    def compute(self, module: nn.Sequential, spec: ModelSpec, sl: Slice, x: torch.Tensor) -> torch.Tensor:
        assert sl.channels is not None
        return _run_layers(module, spec, sl, x, sl.channels)

    def merge(self, module: nn.Sequential, spec: ModelSpec, slices: Sequence[Slice],
              outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(outputs), dim=1)

    def flops(self, spec: ModelSpec, sl: Slice, per_layer: Sequence[float], shapes: Sequence[Shape]) -> float:
        return _rows_flops(spec, sl, per_layer, shapes, channel_share=True)

    def band_range(self, spec: ModelSpec, sl: Slice) -> Rows:
        assert sl.channels is not None
        return sl.channels

    def band(self, spec: ModelSpec, sl: Slice, band: Rows) -> Part:
        assert sl.channels is not None
        c0 = sl.channels[0]
        sub = replace(sl, channels=band, in_channels=band if sl.in_channels is not None else None)
        return Part(sub, 1, band[0] - c0, band[0] - c0 if sl.in_channels is not None else 0)


STRATEGY: Registry[Strategy, SlicingStrategy] = Registry(
    "strategy", {s.name: s for s in (RowsStrategy(), KernelRowsStrategy(), ChannelsStrategy())})
STRATEGIES: tuple[Strategy, ...] = STRATEGY.names


def slice_flops(spec: ModelSpec, sl: Slice, batch: int = 1, per_layer: Sequence[float] | None = None,
                shapes: Sequence[Shape] | None = None) -> float:
    """FLOPs a server spends on ``sl`` for ``batch`` images (multiply-add = 2): each layer's FLOPs
    (``ModelSpec.layer_flops``) times the share of its output the slice really computes, halo rows
    included. The one count of slice work: the latency model's eq. (1) (``plan.latency.slice_load``)
    and the executors' metrics use it. ``per_layer``/``shapes``: precomputed, to save recomputing."""
    if sl.empty:
        return 0.0
    per_layer = spec.layer_flops() if per_layer is None else per_layer
    shapes = spec.shapes() if shapes is None else shapes
    return batch * sl.how.flops(spec, sl, per_layer, shapes)


def worker_parts(spec: ModelSpec, sl: Slice, k: int) -> list[Part]:
    """The slice cut into at most ``k`` parts, one per worker of a sub-zone (one part when k = 1 or it
    is empty). Each part is itself a valid slice, so the parts computed and put together at ``at``
    along ``dim`` equal the slice computed whole."""
    if k <= 1 or sl.empty:
        return [Part(sl, 2, 0)]
    how = sl.how
    return [how.band(spec, sl, band) for band in _bands(*how.band_range(spec, sl), k)]
