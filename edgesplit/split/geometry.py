"""Halo geometry along the height axis: which input rows a range of output rows needs.

Row ranges are half-open ``(start, stop)`` in the coordinates of a layer's unpadded map; a needed range
may reach below 0 or past the map's height, and that part is the layer's own padding (DESIGN.md
section 1: ``in = [r0*s - p, (r1-1)*s - p + d*(k-1) + 1)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from edgesplit.models.spec import Layer, ModelSpec, is_window

Rows = tuple[int, int]


class Need(NamedTuple):
    """Rows of a layer's input that a slice needs: ``rows`` clipped to the map, plus padding counts."""

    rows: Rows
    pad_top: int
    pad_bottom: int


def layer_in_range(layer: Layer, out_rows: Rows) -> Rows:
    """Unclipped input rows that output rows ``[r0, r1)`` of ``layer`` read. Empty in, empty out."""
    r0, r1 = out_rows
    if not is_window(layer):
        return out_rows
    s, p = layer.stride[0], layer.padding[0]  # type: ignore[union-attr]
    if r1 <= r0:
        return (r0 * s - p, r0 * s - p)
    span = layer.span()[0]  # type: ignore[union-attr]
    return (r0 * s - p, (r1 - 1) * s - p + span)


def clip(rows: Rows, height: int) -> Need:
    """Clip an unclipped range to ``[0, height)``; what falls outside becomes padding counts."""
    a, b = rows
    if b <= a:
        c = min(max(a, 0), height)
        return Need((c, c), 0, 0)
    lo, hi = max(a, 0), min(b, height)
    if hi <= lo:  # entirely inside the padding
        lo = hi = min(max(a, 0), height)
        return Need((lo, hi), max(0, min(b, 0) - a), max(0, b - max(a, height)))
    return Need((lo, hi), lo - a, b - hi)


def group_needs(spec: ModelSpec, start: int, stop: int, out_rows: Rows) -> list[Need]:
    """What each layer of the fused group ``[start, stop)`` needs to produce ``out_rows`` of its output.

    Returns one ``Need`` per layer, in layer order; ``needs[0].rows`` is what the server must receive.
    The halo grows backwards through the group (DeepThings' fused tile partitioning).
    """
    shapes = spec.shapes()
    needs: list[Need] = []
    rows = out_rows
    for i in range(stop - 1, start - 1, -1):
        need = clip(layer_in_range(spec.layers[i], rows), shapes[i][1])
        needs.append(need)
        rows = need.rows
    needs.reverse()
    return needs


def split_counts(total: int, parts: Sequence[int]) -> list[Rows]:
    """Consecutive ranges of the given sizes over ``[0, total)``; sizes must sum to ``total``."""
    if sum(parts) != total or any(p < 0 for p in parts):
        raise ValueError(f"part sizes {list(parts)} must be >= 0 and sum to {total}")
    out: list[Rows] = []
    at = 0
    for p in parts:
        out.append((at, at + p))
        at += p
    return out
