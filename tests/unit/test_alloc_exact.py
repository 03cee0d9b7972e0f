"""The exact allocator: stage latency, relaxation curves, lower bound and best allocation vs brute force."""

from __future__ import annotations

import itertools

import numpy as np
from alloc_cases import servers, small_problems, small_spec
from hypothesis import given, settings

from edgesplit.alloc.bounds import curves, lower_bound, min_threads_column
from edgesplit.alloc.cost import AllocProblem, build_problem, even_allocation
from edgesplit.alloc.exact import best_allocation, brute_force
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server, scenario
from edgesplit.plan.ratios import brute_force_split
from edgesplit.plan.search import SpecFacts, cost_table, unit_loads

Case = tuple[ModelSpec, tuple[Server, ...]]


def _columns(problem: AllocProblem) -> list[tuple[int, ...]]:
    ranges = [range(1, problem.kmax(m) + 1) for m in range(problem.n_servers)]
    return list(itertools.product(*ranges))


@settings(max_examples=40, deadline=None)
@given(small_problems())
def test_stage_latency_is_the_best_integer_split(case: Case) -> None:
    spec, srv = case
    problem = build_problem(spec, srv)
    f = SpecFacts.of(spec)
    stage = problem.stages[0]
    column = [problem.kmax(m) for m in range(problem.n_servers)]
    best = np.inf
    for strategy in stage.strategies:
        table = cost_table(unit_loads(f, stage.start, stage.stop, strategy), srv, column)
        total = table.shape[1] - 1
        _, value = brute_force_split(total, [lambda n, row=row: float(row[n]) for row in table])
        best = min(best, value)
    assert stage.latency(column) == best


@settings(max_examples=40, deadline=None)
@given(small_problems())
def test_relaxation_curve_is_the_least_latency_per_thread_total(case: Case) -> None:
    spec, srv = case
    problem = build_problem(spec, srv)
    kmax = [problem.kmax(m) for m in range(problem.n_servers)]
    for stage, g in zip(problem.stages, curves(problem), strict=True):
        by_total: dict[int, float] = {}
        for column in _columns(problem):
            s = sum(column)
            by_total[s] = min(by_total.get(s, np.inf), stage.latency(column))
        for s in range(problem.n_servers, sum(kmax) + 1):
            want = min(v for t, v in by_total.items() if t <= s)
            assert g[s] == want
            column = min_threads_column(stage, kmax, want)
            assert column is not None and sum(column) <= s and stage.latency(column) <= want


@settings(max_examples=40, deadline=None)
@given(small_problems())
def test_bound_and_best_allocation_against_brute_force(case: Case) -> None:
    spec, srv = case
    problem = build_problem(spec, srv)
    for objective in ("sum", "bottleneck"):
        _, optimum = brute_force(problem, objective)
        bound = lower_bound(problem, objective)
        assert bound.value <= optimum * (1 + 1e-12)
        heuristic = best_allocation(problem, objective, brute_limit=0)  # never falls back to brute force
        problem.check(heuristic.alloc)
        assert heuristic.value >= optimum * (1 - 1e-12)
        assert heuristic.value == problem.value(heuristic.alloc, objective)
        if heuristic.optimum is not None:  # certified: it meets the bound, so it is the optimum
            assert heuristic.value == optimum or abs(heuristic.value / optimum - 1) < 1e-9
        exact = best_allocation(problem, objective)  # small enough: proven optimal either way
        assert exact.optimum is not None and abs(exact.optimum / optimum - 1) < 1e-9


def test_a_fast_and_a_slow_server_share_the_work_unequally() -> None:
    problem = build_problem(small_spec([3, 3], [4, 4], size=6), servers([3e6, 1e6], [1e9, 1e9], 6))
    result = best_allocation(problem, "sum")
    assert result.optimum is not None and result.gap >= 0
    assert result.value < problem.value(even_allocation(problem.zone, problem.n_stages), "sum")


def test_paper_scenario_gaps_are_small_with_the_planner_split() -> None:
    srv = scenario("paper").servers
    from edgesplit.models import get_spec

    problem = build_problem(get_spec("alexnet-paper"), srv)
    result = best_allocation(problem, "sum")
    assert 0 <= result.gap < 0.01
    assert result.lower_bound <= result.value


@settings(max_examples=30, deadline=None)
@given(small_problems())
def test_symmetric_search_is_exact_for_identical_servers_and_a_bound_otherwise(case: Case) -> None:
    from edgesplit.alloc.symmetric import applies, symmetric_optimum

    spec, srv = case
    identical = tuple(Server(s.name, s.threads, srv[0].flops_per_thread, srv[0].link_bps,
                             overhead_s=srv[0].overhead_s) for s in srv)
    for servers_, exact_expected in ((identical, True), (srv, False)):
        problem = build_problem(spec, servers_, split="paper")
        assert applies(problem)
        for objective in ("sum", "bottleneck"):
            _, optimum = brute_force(problem, objective)
            found = symmetric_optimum(problem, objective, curves(problem), optimum * 2 + 1.0)
            assert found is not None and found[1] is not None
            value, alloc = found
            problem.check(alloc)
            assert value <= optimum * (1 + 1e-9)
            if exact_expected:
                assert abs(value / optimum - 1) < 1e-9
                assert abs(problem.value(alloc, objective) / optimum - 1) < 1e-9


def test_placements_are_the_distinct_assignments() -> None:
    from edgesplit.alloc.symmetric import placements

    usage, values = (0, 2, 2, 5), (3, 1, 1, 2)
    got = list(placements(usage, values, room=7))
    perms = itertools.permutations(values)
    fits = [p for p in perms if all(u + v <= 7 for u, v in zip(usage, p, strict=True))]
    distinct_states = {tuple(sorted(u + v for u, v in zip(usage, p, strict=True))) for p in fits}
    assert {tuple(sorted(u + v for u, v in zip(usage, p, strict=True))) for p in got} == distinct_states
    assert all(sorted(p) == sorted(values) for p in got)
    assert len(got) == len(set(got))
