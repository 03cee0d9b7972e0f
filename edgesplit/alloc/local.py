"""Building a good allocation from the relaxation's per-stage columns, then improving it locally.

Steps (used by ``exact.best_allocation``):

1. ``arrange``: the relaxation (``bounds``) gives each stage a thread column, but server rows need
   not sum to their zones. Columns are permuted among servers (largest threads to the server with
   the most room, stages with the widest spread first), then pairs of entries within a stage are
   swapped while that lowers the total row imbalance.
2. ``repair``: what imbalance is left is removed by moving one thread at a time, within a stage,
   from a server over its zone to one under it, picking the stage where the move costs least.
3. ``improve``: first-improvement local search with two moves that keep every row sum: move one
   thread of a server from stage i to stage j; and the 2x2 exchange ``k[m,i]+1, k[m',i]-1,
   k[m,j]-1, k[m',j]+1`` (tried when no single move helps).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from edgesplit.alloc.cost import AllocProblem, FloatArray, IntArray, Objective, StageTables

Move = tuple[tuple[int, int, int], ...]


def arrange(columns: IntArray, zone: Sequence[int]) -> IntArray:
    """Permute each stage's column among servers so rows come close to ``zone`` (step 1)."""
    m_count, n_stages = columns.shape
    budget = np.asarray(zone, dtype=np.int64)
    out = np.zeros_like(columns)
    rows = np.zeros(m_count, dtype=np.int64)
    order = sorted(range(n_stages), key=lambda i: (-(columns[:, i].max() - columns[:, i].min()), i))
    for i in order:
        free = list(range(m_count))
        for value in sorted(columns[:, i].tolist(), reverse=True):
            m = max(free, key=lambda j: (budget[j] - rows[j], -j))
            free.remove(m)
            out[m, i] = value
            rows[m] += value
    _swap_balance(out, budget)
    return out


def _swap_balance(alloc: IntArray, budget: IntArray) -> None:
    excess = alloc.sum(axis=1) - budget
    improved = True
    while improved:
        improved = False
        for i in range(alloc.shape[1]):
            for m in range(alloc.shape[0]):
                for n in range(alloc.shape[0]):
                    delta = int(alloc[n, i] - alloc[m, i])
                    if delta == 0:
                        continue
                    before = abs(excess[m]) + abs(excess[n])
                    if abs(excess[m] + delta) + abs(excess[n] - delta) < before:
                        alloc[m, i], alloc[n, i] = alloc[n, i], alloc[m, i]
                        excess[m] += delta
                        excess[n] -= delta
                        improved = True


def repair(problem: AllocProblem, alloc: IntArray) -> IntArray:
    """Make every row sum to its zone (step 2): move threads within a stage from a server over its
    zone to one under it, or, when all are under (over), add (remove) threads where that helps most."""
    budget = np.asarray(problem.zone, dtype=np.int64)
    lat = problem.latencies(alloc)
    while True:
        excess = alloc.sum(axis=1) - budget
        if not excess.any():
            return alloc
        over, under = int(np.argmax(excess)), int(np.argmin(excess))
        take = over if excess[over] > 0 else None
        give = under if excess[under] < 0 else None
        best: tuple[float, int, float] | None = None
        for i, stage in enumerate(problem.stages):
            if take is not None and alloc[take, i] <= 1:
                continue
            if give is not None and alloc[give, i] >= problem.kmax(give):
                continue
            value = _moved_latency(stage, alloc, i, take, give)
            if best is None or value - lat[i] < best[0]:
                best = (value - lat[i], i, value)
        if best is None:
            raise AssertionError(f"no thread can move: rows {alloc.sum(axis=1)}, zones {problem.zone}")
        _, i, value = best
        _shift(alloc, i, take, give, 1)
        lat[i] = value


def _shift(alloc: IntArray, i: int, take: int | None, give: int | None, sign: int) -> None:
    if take is not None:
        alloc[take, i] -= sign
    if give is not None:
        alloc[give, i] += sign


def _moved_latency(stage: StageTables, alloc: IntArray, i: int, take: int | None, give: int | None) -> float:
    _shift(alloc, i, take, give, 1)
    value = stage.latency(alloc[:, i])
    _shift(alloc, i, take, give, -1)
    return value


def _objective(lat: FloatArray, objective: Objective) -> float:
    return float(lat.sum() if objective == "sum" else lat.max())


def _single_moves(m_count: int, n_stages: int) -> Iterator[Move]:
    for m in range(m_count):
        for i in range(n_stages):
            for j in range(n_stages):
                if i != j:
                    yield ((m, i, -1), (m, j, 1))


def _exchange_moves(m_count: int, n_stages: int) -> Iterator[Move]:
    for i in range(n_stages):
        for j in range(i + 1, n_stages):
            for m in range(m_count):
                for n in range(m_count):
                    if m != n:
                        yield ((m, i, 1), (n, i, -1), (m, j, -1), (n, j, 1))


class _Search:
    """Local search state: the allocation, its stage latencies and a cache of column latencies."""

    def __init__(self, problem: AllocProblem, alloc: IntArray, objective: Objective) -> None:
        self.problem, self.alloc, self.objective = problem, alloc, objective
        self.kmax = np.array([problem.kmax(m) for m in range(problem.n_servers)])
        self.cache: dict[tuple[int, bytes], float] = {}
        self.lat = np.array([self.latency(i) for i in range(problem.n_stages)])
        self.value = _objective(self.lat, objective)

    def latency(self, i: int) -> float:
        column = self.alloc[:, i]
        key = (i, column.tobytes())
        if key not in self.cache:
            self.cache[key] = self.problem.stages[i].latency(column)
        return self.cache[key]

    def try_move(self, move: Move) -> bool:
        for m, i, d in move:
            self.alloc[m, i] += d
        valid = all(1 <= self.alloc[m, i] <= self.kmax[m] for m, i, _ in move)
        if valid:
            new = self.lat.copy()
            for i in {i for _, i, _ in move}:
                new[i] = self.latency(i)
            value = _objective(new, self.objective)
            if value < self.value * (1 - 1e-12):
                self.lat, self.value = new, value
                return True
        for m, i, d in move:
            self.alloc[m, i] -= d
        return False


def improve(problem: AllocProblem, alloc: IntArray, objective: Objective, max_sweeps: int = 200) -> IntArray:
    """First-improvement local search with single moves, then 2x2 exchanges (step 3)."""
    search = _Search(problem, alloc.copy(), objective)
    m_count, n_stages = alloc.shape
    for _ in range(max_sweeps):
        improved = any([search.try_move(mv) for mv in _single_moves(m_count, n_stages)])
        if not improved:
            improved = any([search.try_move(mv) for mv in _exchange_moves(m_count, n_stages)])
        if not improved:
            break
    return search.alloc
