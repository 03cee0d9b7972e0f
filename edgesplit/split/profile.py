"""Slice efficiency profiles: how much slower than the whole model a slice computes per FLOP.

Eq. (1) prices a slice at ``x * size / (k * eta)``: its FLOPs at the server's one rate. Measured on
the testbed, that rate holds for the whole edge part but not for its slices: a band of two output rows
of an 8x8 conv, or a few output channels, runs at 7-40 GFLOPS per core where the whole model runs at
70 (thread CPU time, so neither a quota nor a neighbour enters the figure). The 8-host split of
alexnet-paper spent twice the compute time eq. (1) gave it, and the planner chose thin slices for it.

``measure_profile`` measures, per group ``[start, stop)`` and strategy, the factor by which a slice of
n units takes longer than its FLOPs at the whole model's rate (``edgesplit.profiles``, where the
latency model and the planner read it).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import torch
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.profiles import GroupProfile, SliceProfile
from edgesplit.type_aliases import Strategy


def unit_grid(total: int, points: int = 10) -> list[int]:
    """About ``points`` unit counts from 1 to ``total``, spaced evenly in log n (all of them when few)."""
    if total <= points:
        return list(range(1, total + 1))
    step = math.log(total) / (points - 1)
    return sorted({max(1, round(math.exp(i * step))) for i in range(points)} | {total})


def cpu_seconds(fn: Callable[[], object], reps: int) -> float:
    """Median thread CPU time of ``fn`` over ``reps`` calls after one warm-up call. Seconds."""
    fn()
    times = []
    for _ in range(reps):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def measure_profile(spec: ModelSpec, module: nn.Sequential, groups: Iterable[tuple[int, int]],
                    strategies: Sequence[Strategy], reps: int = 5, points: int = 10,
                    progress: Callable[[int, int], None] | None = None) -> SliceProfile:
    """Profile ``groups`` x ``strategies`` (those a group can take) of ``spec`` on this host, one torch
    thread, thread CPU time: at each of ``unit_grid(total, points)`` unit counts, the first slice of a
    split into that many units and the rest, against its FLOPs at the whole edge part's rate."""
    from edgesplit.split import check_group, compute_slice, crop_input, make_slices, part_total, slice_flops

    def valid(a: int, b: int, strategy: Strategy) -> bool:
        try:
            check_group(spec, a, b, strategy)
        except InvalidPlan:
            return False
        return True

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            x = torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(0))
            maps = [x]
            for i in range(spec.n_edge):
                maps.append(module[i](maps[-1]))
            rate = spec.edge_flops() / cpu_seconds(lambda: module[: spec.n_edge](x), reps)
            todo = [(a, b, s) for a, b in groups for s in strategies if valid(a, b, s)]
            out = []
            for done, (a, b, strategy) in enumerate(todo):
                total = part_total(spec, a, b, strategy)
                units, eff = [], []
                for n in unit_grid(total, points):
                    sl = make_slices(spec, a, b, strategy, [n, total - n] if n < total else [n])[0]
                    inp = crop_input(maps[a], sl)
                    seconds = cpu_seconds(partial(compute_slice, module, spec, sl, inp), reps)
                    units.append(n)
                    eff.append(max(1e-3, seconds * rate / max(slice_flops(spec, sl), 1.0)))
                out.append(GroupProfile(a, b, strategy, tuple(units), tuple(eff)))
                if progress is not None:
                    progress(done + 1, len(todo))
    finally:
        torch.set_num_threads(before)
    return SliceProfile(spec.name, tuple(out))
