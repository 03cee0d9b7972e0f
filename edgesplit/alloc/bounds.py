"""Certified lower bounds on the best allocation, by relaxing the per-server zone constraints.

Relaxation: each stage i may use any column ``k[m]`` (``1 <= k[m] <= kmax(m)``) as long as the
thread totals ``t_i = sum_m k[m, i]`` of all stages add up to at most ``sum_m zone[m]``; the
constraint that *each* server's row sums to its zone (eq. 5f) is dropped. Every feasible allocation
is feasible for the relaxation, so its optimum is a lower bound. It is computed exactly:

1. ``stage_curve``: ``g_i(t)`` = the least stage latency over all columns with ``sum_m k[m] <= t``.
   For a threshold T, server m with k threads can take ``cap_m(k, T)`` units (the most d with
   ``times[m, d, k] <= T``); T is reachable with t threads iff the best ``sum_m cap_m(k_m, T)`` over
   columns of total t reaches the stage's D units, a max-plus knapsack over servers solved by DP on t.
   ``g_i(t)`` is the smallest table value T that is reachable; a parallel binary search over the
   sorted table values finds it for every t at once.
2. ``sum``: ``min sum_i g_i(t_i)`` s.t. ``sum_i t_i <= Z`` by DP over stages (separable resource
   allocation); ``bottleneck``: the least T such that ``sum_i t_i(T) <= Z``, ``t_i(T)`` the fewest
   threads with ``g_i(t) <= T``.

The bound is tight when the per-stage optimal columns can be arranged so that every server's row
sums to its zone, which ``exact.best_allocation`` tries to do. With unequal server speeds it is
loose (the pooled threads all go to the fast servers); ``dual`` prices each row instead, and
``exact.best_allocation`` reports the highest of the bounds. ``lower_bound`` itself is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgesplit.alloc.cost import (
    AllocProblem,
    FloatArray,
    IntArray,
    Objective,
    StageTables,
    candidate_latencies,
)

NEG = -(10**9)


def _reach(t: FloatArray, thresholds: FloatArray, kmax: list[int]) -> IntArray:
    """``U[b, s]``: most units the servers take within ``thresholds[b]`` using at most s threads."""
    m_count = t.shape[0]
    total = sum(kmax)
    reach = np.full((len(thresholds), total + 1), NEG, dtype=np.int64)
    reach[:, 0] = 0
    for m in range(m_count):
        new = np.full_like(reach, NEG)
        for k in range(1, kmax[m] + 1):
            cap = np.searchsorted(t[m, :, k], thresholds, side="right") - 1
            np.maximum(new[:, k:], reach[:, : total + 1 - k] + cap[:, None], out=new[:, k:])
        reach = new
    return np.maximum.accumulate(reach, axis=1)


def _curve_one(t: FloatArray, kmax: list[int]) -> FloatArray:
    """``g(s)`` for one strategy table (see module docstring), s = 0..sum(kmax); inf below M.

    Latency is nonincreasing in every k, so ``g`` lies between the latency with every server at its
    most threads and with one thread each: only table values in that range are searched."""
    units = t.shape[1] - 1
    values = candidate_latencies(t, kmax)
    total = sum(kmax)
    wanted = np.arange(len(kmax), total + 1)
    lo = np.zeros(len(wanted), dtype=np.int64)
    hi = np.full(len(wanted), len(values) - 1, dtype=np.int64)
    while (lo < hi).any():
        mid = (lo + hi) // 2
        reach = _reach(t, values[mid], kmax)
        ok = reach[np.arange(len(wanted)), wanted] >= units
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid + 1)
    curve = np.full(total + 1, np.inf)
    final = _reach(t, values[lo], kmax)[np.arange(len(wanted)), wanted] >= units
    curve[wanted[final]] = values[lo[final]]
    return curve


def stage_curve(stage: StageTables, kmax: list[int]) -> FloatArray:
    """``g(s)``: least latency (s) of the stage over columns with at most s threads (any strategy)."""
    curves = [_curve_one(t, kmax) for t in stage.times]
    return np.min(np.stack(curves), axis=0)


def min_threads_column(stage: StageTables, kmax: list[int], threshold: float) -> IntArray | None:
    """A column with the fewest threads whose stage latency is <= ``threshold``; None if none is."""
    best: IntArray | None = None
    for t in stage.times:
        column = _column_one(t, kmax, threshold)
        if column is not None and (best is None or column.sum() < best.sum()):
            best = column
    return best


def _column_one(t: FloatArray, kmax: list[int], threshold: float) -> IntArray | None:
    units = t.shape[1] - 1
    total = sum(kmax)
    reach = np.full(total + 1, NEG, dtype=np.int64)
    reach[0] = 0
    choice = []
    for m in range(t.shape[0]):
        new = np.full_like(reach, NEG)
        arg = np.zeros(total + 1, dtype=np.int64)
        for k in range(1, kmax[m] + 1):
            cap = int(np.searchsorted(t[m, :, k], threshold, side="right") - 1)
            cand = np.full_like(reach, NEG)
            cand[k:] = reach[: total + 1 - k] + cap
            better = cand > new
            new[better] = cand[better]
            arg[better] = k
        choice.append(arg)
        reach = new
    feasible = np.nonzero(reach >= units)[0]
    if len(feasible) == 0:
        return None
    at = int(feasible[0])
    column = np.zeros(t.shape[0], dtype=np.int64)
    for m in range(t.shape[0] - 1, -1, -1):
        column[m] = choice[m][at]
        at -= int(column[m])
    return column


@dataclass(frozen=True)
class Bound:
    """A certified lower bound (s) on the objective and the relaxation's thread total per stage."""

    value: float
    totals: tuple[int, ...]
    stage_values: tuple[float, ...]


def curves(problem: AllocProblem) -> list[FloatArray]:
    """``g_i`` of every stage of the problem."""
    kmax = [problem.kmax(m) for m in range(problem.n_servers)]
    return [stage_curve(st, kmax) for st in problem.stages]


def lower_bound(problem: AllocProblem, objective: Objective,
                stage_curves: list[FloatArray] | None = None) -> Bound:
    """Certified lower bound of the best allocation for ``objective`` (module docstring)."""
    gs = curves(problem) if stage_curves is None else stage_curves
    budget = sum(problem.zone)
    if objective == "sum":
        return _sum_bound(gs, budget)
    return _bottleneck_bound(gs, budget)


def _sum_bound(gs: list[FloatArray], budget: int) -> Bound:
    best = np.full(budget + 1, np.inf)
    best[0] = 0.0
    picks = []
    for g in gs:
        new = np.full(budget + 1, np.inf)
        pick = np.zeros(budget + 1, dtype=np.int64)
        for s in (int(x) for x in np.nonzero(np.isfinite(g))[0]):
            if s > budget:
                break
            cand = best[: budget + 1 - s] + g[s]
            better = cand < new[s:]
            new[s:][better] = cand[better]
            pick[s:][better] = s
        picks.append(pick)
        best = new
    at = int(np.argmin(best))
    totals = []
    for pick in reversed(picks):
        totals.append(int(pick[at]))
        at -= totals[-1]
    totals.reverse()
    values = tuple(float(g[s]) for g, s in zip(gs, totals, strict=True))
    return Bound(float(best.min()), tuple(totals), values)


def _fewest(g: FloatArray, threshold: float) -> int | None:
    ok = np.nonzero(g <= threshold)[0]
    return int(ok[0]) if len(ok) else None


def _bottleneck_bound(gs: list[FloatArray], budget: int) -> Bound:
    values = np.unique(np.concatenate([g[np.isfinite(g)] for g in gs]))
    lo, hi = 0, len(values) - 1

    def need(threshold: float) -> list[int] | None:
        totals = [_fewest(g, threshold) for g in gs]
        if any(s is None for s in totals) or sum(s for s in totals if s is not None) > budget:
            return None
        return [s for s in totals if s is not None]

    while lo < hi:
        mid = (lo + hi) // 2
        if need(float(values[mid])) is not None:
            hi = mid
        else:
            lo = mid + 1
    totals = need(float(values[lo]))
    assert totals is not None, "with every thread in play each stage reaches its 1-thread latency"
    per_stage = tuple(float(g[s]) for g, s in zip(gs, totals, strict=True))
    return Bound(float(values[lo]), tuple(totals), per_stage)
