"""Best sub-zone allocation of one zone, with a certified lower bound and, where tractable, the optimum.

``best_allocation`` (documented in docs/ALLOCATION.md):

1. Lower bound: the relaxation of ``bounds`` (per-server zone rows dropped, thread totals kept),
   solved exactly; raised by steps 3 and 4. Every gap we report is ``latency / lower_bound - 1``.
2. Candidates: (a) the relaxation's per-stage columns arranged onto servers and repaired
   (``local.arrange``, ``local.repair``); (b) the even allocation; (c) the planner's default, each
   server's zone split across convs by FLOPs. Each is improved by ``local.improve``; the best wins.
3. Coarse splits (every stage in at most ``symmetric.MAX_UNITS`` units, e.g. the paper's kernel-rows)
   with equal zones: ``symmetric.symmetric_optimum`` solves the problem exactly on M copies of an
   optimistic server; its value raises the lower bound and its allocation, placed on the real
   servers and polished, is one more candidate. With identical servers it is the optimum.
4. Sum objective, best still more than ``DUAL_RTOL`` above those bounds (unequal server speeds):
   the Lagrangian bound of ``dual`` (each server's zone row priced, ``DUAL_ITERATIONS`` subgradient
   steps from the best equal price) raises the bound; its priced columns, arranged, repaired and
   polished, are one more candidate. ``bound_method`` says which bound is the highest.
5. Optimum: certified when the best candidate meets the lower bound (up to 1e-9 relative), or found
   by exhaustive search when the allocations number at most ``brute_limit`` (``brute_force``).
   Otherwise ``optimum`` is None and the gap to the bound is what we know.

Why not a generic solver: a direct MILP (one binary per server, stage, units and threads) has a weak
LP relaxation (HiGHS left a 30-60% gap after 30 s on alexnet-paper), while the relaxation here
is exact per stage and only drops the row coupling, which the arrangement step mostly restores.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgesplit.alloc.bounds import Bound, curves, lower_bound, min_threads_column
from edgesplit.alloc.cost import AllocProblem, IntArray, Objective, even_allocation
from edgesplit.alloc.dual import dual_bound, uniform_price
from edgesplit.alloc.local import arrange, improve, repair
from edgesplit.alloc.symmetric import symmetric_optimum
from edgesplit.plan.planner import apportion

CERTIFY_RTOL = 1e-9
DUAL_RTOL = 5e-3  # the dual bound is computed while the best is this far above the other bounds
DUAL_ITERATIONS = 60  # about 7-8 s of CPU on 8 unequal servers x 20 threads (alexnet-, vgg16-paper)


@dataclass(frozen=True)
class AllocResult:
    """An allocation and what we know of it. Seconds; ``optimum`` None where not proven."""

    alloc: IntArray
    value: float
    lower_bound: float
    optimum: float | None
    method: str
    seconds: float
    bound_method: str = "relaxation"

    @property
    def gap(self) -> float:
        """``value / lower_bound - 1``: the allocation is within this fraction of the best possible."""
        return self.value / self.lower_bound - 1.0


def count_allocations(problem: AllocProblem) -> int:
    """How many valid allocations there are: per server, compositions of its zone into N parts >= 1
    and <= kmax (only the >= 1 bound is counted, an upper estimate)."""
    n = problem.n_stages
    return math.prod(math.comb(z - 1, n - 1) for z in problem.zone)


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    for bars in itertools.combinations(range(1, total), parts - 1):
        edges = (0, *bars, total)
        yield tuple(edges[j + 1] - edges[j] for j in range(parts))


def brute_force(problem: AllocProblem, objective: Objective) -> tuple[IntArray, float]:
    """Reference optimum by trying every allocation (exponential; small problems and tests only)."""
    rows = [list(_compositions(z, problem.n_stages)) for z in problem.zone]
    best: tuple[IntArray, float] | None = None
    cache: dict[tuple[int, tuple[int, ...]], float] = {}
    for choice in itertools.product(*rows):
        alloc = np.array(choice, dtype=np.int64)
        lat = []
        for i, stage in enumerate(problem.stages):
            key = (i, tuple(alloc[:, i].tolist()))
            if key not in cache:
                cache[key] = stage.latency(alloc[:, i])
            lat.append(cache[key])
        value = float(sum(lat) if objective == "sum" else max(lat))
        if best is None or value < best[1]:
            best = (alloc, value)
    assert best is not None
    return best


def flops_share_allocation(problem: AllocProblem) -> IntArray:
    """The planner's default sub-zones: each zone split across stages in proportion to FLOPs."""
    weights = [float(st.times[0][0, -1, 1]) for st in problem.stages]  # 1-thread time of all units
    return np.array([apportion(weights, z) for z in problem.zone], dtype=np.int64).reshape(
        problem.n_servers, problem.n_stages)


def _from_bound(problem: AllocProblem, bound: Bound, objective: Objective) -> IntArray:
    kmax = [problem.kmax(m) for m in range(problem.n_servers)]
    columns = []
    for i, stage in enumerate(problem.stages):
        threshold = bound.stage_values[i] if objective == "sum" else bound.value
        column = min_threads_column(stage, kmax, threshold)
        assert column is not None, "the bound's threshold is reachable by construction"
        columns.append(column)
    return repair(problem, arrange(np.stack(columns, axis=1), problem.zone))


def best_allocation(problem: AllocProblem, objective: Objective = "sum", brute_limit: int = 20_000,
                    bound: Bound | None = None, polish_rtol: float = 1e-3,
                    dual_iterations: int | None = None) -> AllocResult:
    """Best allocation found, its value, a certified lower bound, and the optimum where proven.

    The other starts are only polished by local search while the best is more than ``polish_rtol``
    above the bound. ``dual_iterations`` bounds the subgradient steps of the Lagrangian bound (step 4
    of the module docstring; ``DUAL_ITERATIONS`` by default, 0 turns it off)."""
    started = time.perf_counter()
    stage_curves = curves(problem)
    bound = lower_bound(problem, objective, stage_curves) if bound is None else bound
    starts = {"relaxation": _from_bound(problem, bound, objective),
              "even": even_allocation(problem.zone, problem.n_stages),
              "flops-share": flops_share_allocation(problem)}
    best: tuple[IntArray, float, str] | None = None
    for name, start in starts.items():  # the relaxation's start first: it is usually within 0.1%
        if best is not None and best[1] <= bound.value * (1 + polish_rtol):
            value = problem.value(problem.check(start), objective)
            if value < best[1]:
                best = (start, value, name)
            continue
        alloc = improve(problem, problem.check(start), objective)
        value = problem.value(alloc, objective)
        if best is None or value < best[1]:
            best = (alloc, value, name)
    assert best is not None
    alloc, value, method = best
    low, bound_method = bound.value, "relaxation"
    if value > low * (1 + CERTIFY_RTOL):
        found = symmetric_optimum(problem, objective, stage_curves, value * (1 + CERTIFY_RTOL))
        if found is not None and found[1] is not None:
            if found[0] > low:
                low, bound_method = found[0], "symmetric"
            polished = improve(problem, problem.check(found[1]), objective)
            if problem.value(polished, objective) < value:
                alloc, value, method = polished, problem.value(polished, objective), "symmetric"
    steps = DUAL_ITERATIONS if dual_iterations is None else dual_iterations
    if objective == "sum" and steps > 0 and value > low * (1 + DUAL_RTOL):
        dual = dual_bound(problem, value, steps,
                          start=np.full(problem.n_servers, uniform_price(stage_curves, problem.zone)))
        if dual.value > low:
            low, bound_method = dual.value, "dual"
        priced = improve(problem, repair(problem, arrange(dual.columns, problem.zone)), objective)
        if problem.value(priced, objective) < value:
            alloc, value, method = priced, problem.value(priced, objective), "dual"
    optimum: float | None = None
    if value <= low * (1 + CERTIFY_RTOL):
        optimum, method = value, f"{method}+certified"
    elif count_allocations(problem) <= brute_limit:
        alloc, value = brute_force(problem, objective)
        optimum, method = value, "brute-force"
    return AllocResult(alloc, value, min(low, value), optimum, method, time.perf_counter() - started,
                       bound_method)

