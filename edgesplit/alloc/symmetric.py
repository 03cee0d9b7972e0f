"""Exact optimum for identical servers by branch and bound: a stronger bound when splits are coarse.

When a stage splits into few units (kernel-rows: a conv's kernel height, 3 to 8 for the paper's
CNNs) the relaxation of ``bounds`` can be loose: its per-stage columns ask some servers for many
threads in several stages at once, which no server's zone can hold. Here the per-server zones are
kept and the servers are replaced by one *optimistic* server, ``f*(d, k) = min_m times[m, d, k]``,
copied M times, each with the same zone K. Every real allocation costs at least its value on the
optimistic servers, so the optimum of this problem is a lower bound on the real one, and is the
real optimum when the servers are identical.

Search: stages one by one; a stage's *options* are the Pareto-minimal sorted thread multisets (a
multiset A beats B if its latency is not higher and A <= B element by element, both sorted). For
a threshold T, a minimal multiset is a partition of the D units into at most M parts d_j, each
part on a server with ``kappa_T(d_j)`` threads (the fewest that run d_j units within T), the other
servers idle with 1 thread. An option is placed on servers in every distinct way (servers with the
same threads used so far are interchangeable, so values go to them in decreasing order); a node is
pruned by ``acc + suffix relaxation bound(threads left) >= incumbent`` and by a memo of the best
accumulated value per (depth, sorted usage). Only used when every stage has at most ``MAX_UNITS``
units (finer splits make the relaxation tight anyway) and all zones are equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from edgesplit.alloc.cost import AllocProblem, FloatArray, IntArray, Objective

MAX_UNITS = 12
Option = tuple[float, tuple[int, ...]]


def _partitions(total: int, parts: int, largest: int | None = None) -> Iterator[tuple[int, ...]]:
    """Partitions of ``total`` into at most ``parts`` parts, nonincreasing."""
    largest = total if largest is None else largest
    if total == 0:
        yield ()
        return
    if parts == 0:
        return
    for first in range(min(total, largest), 0, -1):
        for rest in _partitions(total - first, parts - 1, first):
            yield (first, *rest)


def stage_options(tables: Sequence[FloatArray], m_count: int, kmax: int, cap: float) -> list[Option]:
    """Pareto-minimal (latency, sorted thread multiset) options of one stage with latency <= cap."""
    found: dict[tuple[int, ...], float] = {}
    for t in tables:  # t: (D+1, kcap+1) optimistic table of one strategy
        units = t.shape[0] - 1
        thresholds = np.unique(t[1:, 1 : kmax + 1])
        for threshold in thresholds[thresholds <= cap]:
            kappa = [0] + [int(np.argmax(t[d, 1 : kmax + 1] <= threshold)) + 1
                           if (t[d, 1 : kmax + 1] <= threshold).any() else 0 for d in range(1, units + 1)]
            for parts in _partitions(units, m_count):
                if any(kappa[d] == 0 for d in parts):
                    continue
                used = [kappa[d] for d in parts] + [1] * (m_count - len(parts))
                threads = tuple(sorted(used, reverse=True))
                latency = max(float(t[d, kappa[d]]) for d in parts)
                if latency < found.get(threads, np.inf):
                    found[threads] = latency
    options = sorted((lat, threads) for threads, lat in found.items())
    kept: list[Option] = []
    for lat, threads in options:  # by latency: a later option is kept only if no kept one is <= it
        if not any(all(a <= b for a, b in zip(k, threads, strict=True)) for _, k in kept):
            kept.append((lat, threads))
    return kept


def placements(usage: tuple[int, ...], values: tuple[int, ...], room: int) -> Iterator[tuple[int, ...]]:
    """Distinct ways to give ``values`` (one per server) to servers with ``usage``, each ending <= room.

    Servers with equal usage are interchangeable: among them values are given in decreasing order."""
    m_count = len(usage)
    order = sorted(range(m_count), key=lambda m: (usage[m], m))
    out = [0] * m_count
    pool = sorted(values, reverse=True)

    def fill(pos: int, left: list[int], floor_value: int) -> Iterator[tuple[int, ...]]:
        if pos == m_count:
            yield tuple(out)
            return
        m = order[pos]
        same_as_prev = pos > 0 and usage[order[pos - 1]] == usage[m]
        for idx, v in enumerate(left):
            if (idx > 0 and left[idx - 1] == v) or usage[m] + v > room:
                continue
            if same_as_prev and v > floor_value:
                continue
            out[m] = v
            yield from fill(pos + 1, left[:idx] + left[idx + 1 :], v)

    yield from fill(0, pool, max(values))


class _Search:
    def __init__(self, problem: AllocProblem, objective: Objective, options: list[list[Option]],
                 suffix: list[FloatArray], upper: float, node_limit: int) -> None:
        self.problem, self.objective, self.options, self.suffix = problem, objective, options, suffix
        self.best = upper
        self.best_path: list[tuple[int, ...]] | None = None
        self.nodes, self.node_limit = 0, node_limit
        self.memo: dict[tuple[int, tuple[int, ...]], float] = {}
        self.zone = problem.zone[0]

    def combine(self, acc: float, value: float) -> float:
        return acc + value if self.objective == "sum" else max(acc, value)

    def run(self, depth: int, usage: tuple[int, ...], acc: float, path: list[tuple[int, ...]]) -> None:
        self.nodes += 1
        if self.nodes > self.node_limit:
            raise TimeoutError
        n_stages = len(self.options)
        if depth == n_stages:
            if acc < self.best:
                self.best, self.best_path = acc, list(path)
            return
        key = (depth, tuple(sorted(usage)))
        if self.memo.get(key, np.inf) <= acc:
            return
        self.memo[key] = acc
        room = self.zone - (n_stages - depth - 1)
        for latency, values in self.options[depth]:
            value = self.combine(acc, latency)
            left = len(self.problem.zone) * self.zone - sum(usage) - sum(values)
            if self.combine(value, float(self.suffix[depth + 1][max(left, 0)])) >= self.best:
                continue
            for placed in placements(usage, values, room):
                path.append(placed)
                self.run(depth + 1, tuple(u + v for u, v in zip(usage, placed, strict=True)), value, path)
                path.pop()


def _suffix_bounds(curves: list[FloatArray], budget: int, objective: Objective) -> list[FloatArray]:
    """``suffix[j][R]``: relaxation bound of stages j.. with at most R threads (sum or max)."""
    out = [np.zeros(budget + 1)]
    for g in reversed(curves):
        nxt = out[0]
        cur = np.full(budget + 1, np.inf)
        for s in (int(x) for x in np.nonzero(np.isfinite(g[: budget + 1]))[0]):
            rest = nxt[: budget + 1 - s]
            cand = rest + g[s] if objective == "sum" else np.maximum(rest, g[s])
            cur[s:] = np.minimum(cur[s:], cand)
        out.insert(0, cur)
    return out


def applies(problem: AllocProblem) -> bool:
    """Whether the search is used: equal zones and every strategy of every stage has few units."""
    coarse = all(t.shape[1] - 1 <= MAX_UNITS for st in problem.stages for t in st.times)
    return coarse and len(set(problem.zone)) == 1


def symmetric_optimum(problem: AllocProblem, objective: Objective, curves: list[FloatArray], upper: float,
                      node_limit: int = 200_000) -> tuple[float, IntArray | None] | None:
    """Optimum of the optimistic identical-server problem (module docstring), below ``upper``.

    Returns (value, allocation on the optimistic servers or None if nothing beats ``upper``), or None
    when the search does not apply or exceeds ``node_limit`` nodes. ``curves`` are ``bounds.curves``."""
    if not applies(problem):
        return None
    m_count, kmax = problem.n_servers, problem.kmax(0)
    budget = sum(problem.zone)
    suffix = _suffix_bounds(curves, budget, objective)
    mins = [float(np.min(g)) for g in curves]
    options = []
    for i, stage in enumerate(problem.stages):
        cap = upper - (sum(mins) - mins[i]) if objective == "sum" else upper
        optimistic = [t.min(axis=0) for t in stage.times]
        options.append(stage_options(optimistic, m_count, kmax, cap))
    search = _Search(problem, objective, options, suffix, upper, node_limit)
    try:
        search.run(0, (0,) * m_count, 0.0, [])
    except TimeoutError:
        return None
    if search.best_path is None:
        return upper, None
    alloc = np.array(search.best_path, dtype=np.int64).T
    return search.best, _fill(alloc, problem.zone)


def _fill(alloc: IntArray, zone: Sequence[int]) -> IntArray:
    """Give the threads a server has left (options use the fewest) to its largest sub-zone: more
    threads never make a stage slower."""
    out = alloc.copy()
    for m, z in enumerate(zone):
        out[m, int(np.argmax(out[m]))] += z - int(out[m].sum())
    return out

