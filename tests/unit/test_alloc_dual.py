"""The Lagrangian bound: every L(prices) is below the brute-force optimum, its inner minimum is the
enumerated one, and it is tighter than the pooled-threads relaxation when server speeds differ."""

from __future__ import annotations

import itertools

import numpy as np
from alloc_cases import servers, small_problems, small_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.alloc.bounds import lower_bound
from edgesplit.alloc.cost import AllocProblem, build_problem
from edgesplit.alloc.dual import Dual, dual_bound
from edgesplit.alloc.exact import best_allocation, brute_force
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server

Case = tuple[ModelSpec, tuple[Server, ...]]


def _enumerated(problem: AllocProblem, prices: np.ndarray) -> float:
    """``L(prices)`` by trying every column of every stage."""
    ranges = [range(1, problem.kmax(m) + 1) for m in range(problem.n_servers)]
    columns = [np.array(c) for c in itertools.product(*ranges)]
    inner = [min(st.latency(c) + float(prices @ c) for c in columns) for st in problem.stages]
    return sum(inner) - float(prices @ np.asarray(problem.zone))


@settings(max_examples=25, deadline=None)
@given(small_problems(), st.integers(0, 2**16))
def test_every_priced_bound_is_below_the_optimum_and_equals_the_enumeration(case: Case, seed: int) -> None:
    spec, srv = case
    problem = build_problem(spec, srv)
    _, optimum = brute_force(problem, "sum")
    dual = Dual(problem)
    rng = np.random.default_rng(seed)
    for scale in (0.0, 0.01, 0.1):
        prices = rng.uniform(0, scale * optimum, problem.n_servers)
        value, columns = dual(prices)
        assert value <= optimum * (1 + 1e-12)
        exact = _enumerated(problem, prices)
        assert exact - 1e-6 * abs(exact) <= value <= exact * (1 + 1e-12)
        assert columns.shape == (problem.n_servers, problem.n_stages) and columns.min() >= 1
    best = dual_bound(problem, optimum, iterations=30)
    assert best.value <= optimum * (1 + 1e-12)


def test_unequal_speeds_the_dual_bound_is_tighter_and_certifies_the_optimum() -> None:
    problem = build_problem(small_spec([3, 3, 3], [4, 6, 4], size=6), servers([3e6, 1e6], [1e9, 1e9], 6))
    _, optimum = brute_force(problem, "sum")
    old = lower_bound(problem, "sum").value
    assert old < optimum * 0.9  # the pooled relaxation moves threads to the fast server
    result = best_allocation(problem, "sum", brute_limit=0)  # no brute force: the bound must certify
    assert result.bound_method == "dual"
    assert old < result.lower_bound <= optimum * (1 + 1e-12)
    assert result.optimum is not None and abs(result.optimum / optimum - 1) < 1e-9
    assert result.method.endswith("+certified")


def test_best_allocation_without_the_dual_keeps_the_relaxation_bound() -> None:
    problem = build_problem(small_spec([3, 3, 3], [4, 6, 4], size=6), servers([3e6, 1e6], [1e9, 1e9], 6))
    result = best_allocation(problem, "sum", brute_limit=0, dual_iterations=0)
    assert result.bound_method == "relaxation"
    assert result.lower_bound == lower_bound(problem, "sum").value
