"""How a sub-zone's k workers share one slice, and the FLOPs a slice really computes.

A band of units of a slice is itself a valid slice: for ``rows`` a band of output rows (its input
rows, halo included, lie inside the slice's); for ``kernel-rows`` a band of output rows of the partial
sum (kernel rows ``[e, l)`` over fewer output rows); for ``channels`` a band of channels. So the k
parts computed with ``compute_slice`` and concatenated equal the slice computed whole.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from edgesplit.models.spec import Conv2d, ModelSpec
from edgesplit.split import Slice, clip, group_needs, make_slices, part_total, split_counts


@dataclass(frozen=True)
class Part:
    """One worker's share: its sub-slice, where its input starts inside the slice's input
    (``in_at`` along H, or along C for a channel split of a group without conv), and where its
    output goes (``at`` along ``dim``)."""

    slice: Slice
    dim: int
    at: int
    in_at: int = 0

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the slice's input ``x`` (N, C, H, W) this sub-slice reads (a view)."""
        sl = self.slice
        if sl.in_channels is not None and sl.strategy == "channels":
            return x.narrow(1, self.in_at, sl.in_channels[1] - sl.in_channels[0])
        return x.narrow(2, self.in_at, sl.in_rows[1] - sl.in_rows[0])


def _bands(first: int, last: int, k: int) -> list[tuple[int, int]]:
    """``[first, last)`` cut into min(k, size) near-equal consecutive bands (larger ones first)."""
    n = last - first
    k = max(1, min(k, n))
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    return [(first + a, first + b) for a, b in split_counts(n, sizes)]


def _rows_part(spec: ModelSpec, sl: Slice, band: tuple[int, int]) -> Part:
    total = part_total(spec, sl.start, sl.stop, "rows")
    sub = make_slices(spec, sl.start, sl.stop, "rows", [band[0], band[1] - band[0], total - band[1]])[1]
    return Part(sub, 2, band[0] - sl.out_rows[0], sub.in_rows[0] - sl.in_rows[0])


def _kernel_rows_part(spec: ModelSpec, sl: Slice, band: tuple[int, int]) -> Part:
    layer = spec.layers[sl.start]
    assert isinstance(layer, Conv2d) and sl.kernel_rows is not None
    k0, k1 = sl.kernel_rows
    s, p, d = layer.stride[0], layer.padding[0], layer.dilation[0]
    a, b = band
    # output row r of kernel rows [k0, k1) reads input rows r*s - p + d*k0 ... r*s - p + d*(k1-1)
    need = clip((a * s - p + k0 * d, (b - 1) * s - p + (k1 - 1) * d + 1), spec.shapes()[sl.start][1])
    sub = Slice("kernel-rows", sl.start, sl.stop, need.rows, (need.pad_top, need.pad_bottom), band,
                kernel_rows=sl.kernel_rows)
    return Part(sub, 2, a, need.rows[0] - sl.in_rows[0])


def _channels_part(sl: Slice, band: tuple[int, int]) -> Part:
    assert sl.channels is not None
    c0 = sl.channels[0]
    sub = replace(sl, channels=band, in_channels=band if sl.in_channels is not None else None)
    return Part(sub, 1, band[0] - c0, band[0] - c0 if sl.in_channels is not None else 0)


def worker_parts(spec: ModelSpec, sl: Slice, k: int) -> list[Part]:
    """The slice cut into at most ``k`` parts, one per worker (one part when k = 1 or it is empty)."""
    if k <= 1 or sl.empty:
        return [Part(sl, 2, 0)]
    if sl.strategy == "rows":
        return [_rows_part(spec, sl, band) for band in _bands(*sl.out_rows, k)]
    if sl.strategy == "kernel-rows":
        h_out = spec.shapes()[sl.start + 1][1]
        return [_kernel_rows_part(spec, sl, band) for band in _bands(0, h_out, k)]
    assert sl.channels is not None
    return [_channels_part(sl, band) for band in _bands(*sl.channels, k)]


def slice_flops(spec: ModelSpec, sl: Slice, batch: int = 1) -> float:
    """FLOPs a server spends on ``sl`` (multiply-add = 2), halo rows included; ``batch`` images."""
    if sl.empty:
        return 0.0
    flops, shapes = spec.layer_flops(), spec.shapes()
    if sl.strategy == "kernel-rows":
        assert sl.kernel_rows is not None
        layer = spec.layers[sl.start]
        assert isinstance(layer, Conv2d)
        frac_k = (sl.kernel_rows[1] - sl.kernel_rows[0]) / layer.kernel[0]
        frac_h = (sl.out_rows[1] - sl.out_rows[0]) / shapes[sl.start + 1][1]
        return batch * flops[sl.start] * frac_k * frac_h
    needs = group_needs(spec, sl.start, sl.stop, sl.out_rows)
    total = 0.0
    for j, i in enumerate(range(sl.start, sl.stop)):
        out = needs[j + 1].rows if j + 1 < len(needs) else sl.out_rows
        frac = (out[1] - out[0]) / shapes[i + 1][1]
        if sl.strategy == "channels":
            assert sl.channels is not None
            frac *= (sl.channels[1] - sl.channels[0]) / shapes[i + 1][0]
        total += flops[i] * frac
    return batch * total
