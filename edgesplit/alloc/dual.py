"""A Lagrangian (dual) lower bound for the ``sum`` objective that prices each server's zone (eq. 5f).

The relaxation of ``bounds`` drops every server's zone row and keeps only the total thread budget,
so with unequal server speeds it moves threads to the fast servers beyond their zones and is loose
(5-20% below the best allocation on the held-out draws of ``heldout``). Here each row keeps a price
instead: for prices ``lam[m] >= 0`` (seconds per thread),

    L(lam) = sum_i min over columns k of [latency_i(k) + sum_m lam[m] k[m]] - sum_m lam[m] zone[m].

Every feasible allocation has rows summing to the zones, so its summed latency equals the bracket
summed over its own columns minus ``lam . zone``, which is at least ``L(lam)``: every ``L(lam)`` is
a lower bound (weak duality), whatever the prices. ``dual_bound`` raises it by projected subgradient
ascent (Polyak steps towards a known allocation's value).

The inner minimum, per stage and strategy table: a column's latency is a table value T (the D-th
smallest of its servers' costs, ``cost.StageTables.latency``), reached within T iff its servers take
D units within T (``cap``). ``price(T)`` = the cheapest column reaching T, a min-plus knapsack over
servers by DP on units. Columns with latency in ``(a, b]`` (a, b table values) cost at least
``next(a) + price(b)``; an interval is split until that lower value is within ``tol`` of the best
``T + price(T)`` seen, so the minimum returned is a lower bound on the exact inner minimum and at
most ``tol`` (relative) below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgesplit.alloc.cost import AllocProblem, FloatArray, IntArray, candidate_latencies

Caps = npt.NDArray[np.int16]  # units per (threshold, server, threads - 1); D <= 32767

SPLITS = 4  # sub-intervals per refinement of a threshold interval
FIRST = 16  # thresholds evaluated first per strategy table


class _Table:
    """One strategy table of one stage, prepared for priced knapsacks at many thresholds."""

    def __init__(self, t: FloatArray, kmax: list[int]) -> None:
        self.units = t.shape[1] - 1
        self.kmax = kmax
        self.width = max(kmax)
        self.rows = [[np.ascontiguousarray(t[m, 1:, k]) for k in range(1, kmax[m] + 1)]
                     for m in range(t.shape[0])]
        self.values = candidate_latencies(t, kmax)
        self.all_caps: Caps = self.caps(self.values).astype(np.int16)  # prices change, caps do not
        self.hints: list[int] = []  # threshold indices to price first (``_stage_min``)

    def caps(self, thresholds: FloatArray) -> IntArray:
        """``cap[b, m, k-1]``: units server m with k threads takes within ``thresholds[b]`` (0 past kmax)."""
        out = np.zeros((len(thresholds), len(self.rows), self.width), dtype=np.int64)
        for m, per_k in enumerate(self.rows):
            for j, row in enumerate(per_k):
                out[:, m, j] = np.searchsorted(row, thresholds, side="right")
        return out

    def price(self, prices: FloatArray, at: list[int]) -> dict[int, float]:
        """``{q: least sum_m prices[m] k[m] over columns reaching values[q]}`` (inf if none does)."""
        if not at:
            return {}
        cost = _knapsack(self.all_caps[at], self._costs(prices), self.units, picks=None)[:, -1]
        return dict(zip(at, cost.tolist(), strict=True))

    def column(self, prices: FloatArray, at: int) -> IntArray:
        """A cheapest column reaching the threshold ``values[at]`` (which must be reachable)."""
        caps = self.all_caps[[at]]
        picks: list[IntArray] = []
        _knapsack(caps, self._costs(prices), self.units, picks)
        at = self.units
        column = np.zeros(len(self.rows), dtype=np.int64)
        for m in range(len(self.rows) - 1, -1, -1):
            column[m] = picks[m][0, at] + 1
            at = max(at - int(caps[0, m, column[m] - 1]), 0)
        return column

    def _costs(self, prices: FloatArray) -> FloatArray:
        ks = np.arange(1, self.width + 1, dtype=np.float64)
        costs = prices[:, None] * ks[None, :]
        for m, k in enumerate(self.kmax):
            costs[m, k:] = np.inf
        return costs


def _knapsack(caps: Caps, costs: FloatArray, units: int, picks: list[IntArray] | None) -> FloatArray:
    """``F[b, v]``: least cost of a column whose servers take at least v units within threshold b;
    ``picks[m][b, v]``, when asked for, is server m's threads minus 1 in that column."""
    batch, width = caps.shape[0], caps.shape[2]
    table = np.full((batch, units + 1), np.inf)
    table[:, 0] = 0.0
    v = np.arange(units + 1)
    base = (np.arange(batch) * (units + 1))[:, None, None]
    for m in range(caps.shape[1]):
        before = np.maximum(v[None, None, :] - caps[:, m, :, None], 0) + base
        options = np.take(table, before) + costs[m][None, :, None]
        if picks is not None:
            picks.append(np.argmin(options, axis=1))
        table = options.min(axis=1) if width > 1 else options[:, 0]
    return table


def _stage_min(tables: list[_Table], prices: FloatArray, tol: float) -> tuple[float, IntArray]:
    """A lower bound on ``min_k latency(k) + prices . k`` (within ``tol``) and the best column seen.

    Each table first prices its best threshold of the previous call (prices move little between
    subgradient steps), so the incumbent is good and most threshold intervals are settled at once."""
    costs = [tab.price(prices, tab.hints) for tab in tables]
    seen = [(tab.values[q] + c, n, q) for n, (tab, cost) in enumerate(zip(tables, costs, strict=True))
            for q, c in cost.items()]
    best = min(seen, default=(np.inf, 0, 0))
    lows: list[float] = []
    for n, (tab, cost) in enumerate(zip(tables, costs, strict=True)):
        pending, parts = [(-1, len(tab.values) - 1)], FIRST
        while pending:
            cuts = {(a, b): _splits(a, b, parts) for a, b in pending}
            cost.update(tab.price(prices, sorted({q for qs in cuts.values() for q in qs} - cost.keys())))
            best = min(best, *((tab.values[q] + c, n, q) for q, c in cost.items()))
            pending, parts = [], SPLITS
            for (a, _), qs in cuts.items():
                for lo, hi in zip([a, *qs[:-1]], qs, strict=True):
                    low = float(tab.values[lo + 1] + cost[hi])  # latency above values[lo], cost of values[hi]
                    if hi == lo + 1 or low >= best[0] - tol * abs(best[0]):
                        lows.append(low)
                    else:
                        pending.append((lo, hi))
    for tab, cost in zip(tables, costs, strict=True):
        tab.hints = [min(cost, key=lambda q: float(tab.values[q] + cost[q]))]
    return min(lows), tables[best[1]].column(prices, best[2])


def _splits(a: int, b: int, parts: int) -> list[int]:
    """Up to ``parts`` indices in ``(a, b]`` ending at b, evenly spaced."""
    return sorted({int(x) for x in np.linspace(a, b, parts + 1)[1:].round()} - {a})


@dataclass(frozen=True)
class DualBound:
    """The best Lagrangian bound found (s), its prices (s per thread) and each stage's priced column."""

    value: float
    prices: tuple[float, ...]
    columns: IntArray
    iterations: int


class Dual:
    """``L(prices)`` of one problem (module docstring), with the tables prepared once."""

    def __init__(self, problem: AllocProblem, tol: float = 1e-7) -> None:
        kmax = [problem.kmax(m) for m in range(problem.n_servers)]
        self.tables = [[_Table(t, kmax) for t in st.times] for st in problem.stages]
        self.zone = np.asarray(problem.zone, dtype=np.float64)
        self.tol = tol

    def __call__(self, prices: FloatArray) -> tuple[float, IntArray]:
        """A lower bound on the optimum (s) and the priced column of each stage, ``(M, N)``."""
        found = [_stage_min(tabs, prices, self.tol) for tabs in self.tables]
        value = sum(v for v, _ in found) - float(prices @ self.zone)
        return value, np.stack([c for _, c in found], axis=1)


def uniform_price(stage_curves: list[FloatArray], zone: tuple[int, ...], rounds: int = 60) -> float:
    """The best equal price of every thread: the maximiser of ``L(mu * 1)``, which only needs the
    relaxation's curves (``bounds.stage_curve``: ``min_k latency(k) + mu sum(k) = min_t g(t) + mu t``).
    ``L`` is concave in ``mu``: ternary search. Seconds per thread."""
    budget = sum(zone)
    finite = [(np.nonzero(np.isfinite(g))[0], g[np.isfinite(g)]) for g in stage_curves]

    def value(mu: float) -> float:
        return sum(float((g + mu * t).min()) for t, g in finite) - mu * budget

    lo, hi = 0.0, max(float(g[0] - g[-1]) for _, g in finite) + 1e-30
    for _ in range(rounds):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, b) if value(a) >= value(b) else (a, hi)
    return (lo + hi) / 2


def dual_bound(problem: AllocProblem, upper: float, iterations: int = 60, rtol: float = 1e-9,
               tol: float = 1e-7, start: FloatArray | None = None) -> DualBound:
    """The best ``L(prices)`` over projected subgradient steps from ``start`` (zero prices by default):
    Polyak steps towards ``upper``, the value of a known allocation, halved after 5 steps without a
    better bound; stops early once within ``rtol`` of ``upper``. Seconds."""
    dual = Dual(problem, tol)
    prices = np.zeros(problem.n_servers) if start is None else np.asarray(start, dtype=np.float64)
    best = DualBound(-np.inf, tuple(prices.tolist()), np.zeros((problem.n_servers, problem.n_stages),
                                                                dtype=np.int64), 0)
    theta, stale = 1.0, 0
    for it in range(1, iterations + 1):
        value, columns = dual(prices)
        if value > best.value:
            best, stale = DualBound(value, tuple(prices.tolist()), columns, it), 0
        else:
            stale += 1
            if stale >= 5:
                theta, stale = theta / 2, 0
        step = columns.sum(axis=1) - dual.zone
        norm = float(step @ step)
        if best.value >= upper * (1 - rtol) or norm == 0.0:
            break
        prices = np.maximum(prices + theta * (upper - value) / norm * step, 0.0)
    return best
