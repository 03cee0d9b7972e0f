"""Split ratios: eq. (7), the paper's Algorithm 1, and an optimal integer min-max split.

A *unit* (the paper's "pie") is what a strategy splits: an output row, a kernel row or a channel.
``split_cost`` of a split is the largest per-server cost, the inner ``max`` of eq. (6).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from edgesplit.errors import InvalidPlan

CostFn = Callable[[int], float]


def eq7_ratios(coefficients: Sequence[float]) -> list[float]:
    """Closed-form split ratios of eq. (7): x_j = 1 / ((sum_m 1/a_m) * a_j), with a_j = size/(k_j*eta_j).

    They make ``x_j * a_j`` equal for every server and sum to 1.
    """
    if not coefficients:
        raise InvalidPlan("a split needs at least 1 server, got 0")
    if min(coefficients) <= 0:
        raise InvalidPlan(f"eq. (7) coefficients must be > 0, got {list(coefficients)}")
    inv = sum(1.0 / a for a in coefficients)
    return [1.0 / (inv * a) for a in coefficients]


def eq7_coefficients(size: float, threads: Sequence[float], flops_per_thread: Sequence[float]) -> list[float]:
    """a_j = size / (k_j * eta_j) of eq. (7) (seconds to run the whole conv on server j)."""
    return [size / (k * eta) for k, eta in zip(threads, flops_per_thread, strict=True)]


def algorithm1(total: int, ratios: Sequence[float], speeds: Sequence[float]) -> list[int]:
    """The paper's Algorithm 1 (section 4.1): integer parts from eq. (7) ratios.

    ``total`` is the Conv's height b_i (units), ``ratios`` the x_m of eq. (7) (p_m = x_m * b_i),
    ``speeds`` the k_m * eta_m of each server (cost of d units on server m is d / speeds[m]).
    Lines 1-4: d_m = floor(p_m), the remainder goes to d_1. Lines 5-18: for each server m in turn,
    repeatedly move one unit from m to the server whose cost is the smallest (t_min).
    Lines 13-15 are garbled in the paper's text; the prose says the moves repeat "until the maximal
    one among d_m/(k_m eta_m) is not smaller than the original d_1/(k_1 eta_1)". We read it as: t' is
    server m's cost before the move (line 8); after the move, if t_max >= t' the move did not lower
    the bottleneck, so it is undone and the loop for server m stops. Line 17 puts d_m into S when
    server m is done, but later moves may still add units to it; we return the final d (the only
    reading whose parts sum to b_i).
    """
    m_count = len(ratios)
    if m_count == 0:
        raise InvalidPlan("a split needs at least 1 server, got 0")
    d = [math.floor(x * total + 1e-9) for x in ratios]
    d[0] += total - sum(d)

    def cost(j: int) -> float:
        return d[j] / speeds[j]

    for m in range(m_count):
        for _ in range(d[m]):
            t_prime = cost(m)
            j_min = min(range(m_count), key=cost)
            if j_min == m:
                break
            d[m] -= 1
            d[j_min] += 1
            if max(cost(j) for j in range(m_count)) >= t_prime:
                d[m] += 1
                d[j_min] -= 1
                break
    return d


def split_cost(parts: Sequence[int], costs: Sequence[CostFn]) -> float:
    """Max over servers of cost_m(parts[m]): the bottleneck of a split."""
    return max(c(n) for c, n in zip(costs, parts, strict=True))


def waterfill(total: int, costs: Sequence[CostFn]) -> list[int]:
    """Optimal integer min-max split by greedy water-filling.

    Units are assigned one at a time to the server whose cost after the assignment is the smallest.
    When every ``costs[m]`` is nondecreasing in its units this minimises ``max_m costs[m](n_m)``
    subject to ``sum n_m = total`` (exchange argument: the greedy's k-th choice is the k-th smallest
    value of the merged sorted "next unit" costs, and any split must pay at least that much).
    ``costs[m](0)`` should be 0 when an unused server costs nothing. O(total * log M).
    """
    if not costs:
        raise InvalidPlan("a split needs at least 1 server, got 0")
    parts = [0] * len(costs)
    if total == 0:
        return parts
    heap = [(c(1), m) for m, c in enumerate(costs)]
    heapq.heapify(heap)
    for _ in range(total):
        _, m = heapq.heappop(heap)
        parts[m] += 1
        if parts[m] < total:  # costs are only asked for 0..total units
            heapq.heappush(heap, (costs[m](parts[m] + 1), m))
    return parts


def minmax_split(total: int, table: npt.NDArray[np.float64]) -> tuple[list[int], float]:
    """Optimal integer min-max split over a cost table: ``table[m, n]`` = cost of n units on server m.

    Rows must be nondecreasing with ``n`` (``table[m, 0]`` usually 0) and have ``total + 1`` columns.
    Same optimum as ``waterfill``, without the loop: with nondecreasing rows, server m can take n
    units within a bottleneck T exactly when ``table[m, 1..n] <= T``, so the units available within
    T are the entries of ``table[:, 1:]`` that are <= T, and the optimal bottleneck is the
    ``total``-th smallest of them (``np.partition``, linear time), or the largest 0-unit cost if
    higher. Ties are broken towards fewer servers (largest capacities first, then lower index).
    Returns (parts, bottleneck cost).
    """
    m_count = table.shape[0]
    if m_count == 0:
        raise InvalidPlan("a split needs at least 1 server, got 0")
    if table.shape[1] < total + 1:
        raise InvalidPlan(f"cost table has {table.shape[1]} columns, {total + 1} needed")
    threshold = float(table[:, 0].max())
    if total > 0:
        units = table[:, 1 : total + 1].ravel()
        threshold = max(threshold, float(np.partition(units, total - 1)[total - 1]))
    caps = (table[:, 1 : total + 1] <= threshold).sum(axis=1)
    parts = [0] * m_count
    left = total
    for m in sorted(range(m_count), key=lambda j: (-caps[j], j)):
        take = min(int(caps[m]), left)
        parts[m] = take
        left -= take
        if left == 0:
            break
    bottleneck = float(table[np.arange(m_count), parts].max())
    return parts, bottleneck


def brute_force_split(total: int, costs: Sequence[CostFn]) -> tuple[list[int], float]:
    """Reference for tests: try every split of ``total`` units over the servers. Exponential."""
    best: tuple[list[int], float] | None = None
    m_count = len(costs)
    for bars in itertools.combinations(range(total + m_count - 1), m_count - 1):
        edges = (-1, *bars, total + m_count - 1)
        parts = [edges[i + 1] - edges[i] - 1 for i in range(m_count)]
        value = split_cost(parts, costs)
        if best is None or value < best[1]:
            best = (parts, value)
    assert best is not None
    return best
