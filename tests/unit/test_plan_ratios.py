"""Eq. (7) ratios, the paper's Algorithm 1, and the optimal min-max split against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.errors import InvalidPlan
from edgesplit.plan.ratios import (
    algorithm1,
    brute_force_split,
    eq7_coefficients,
    eq7_ratios,
    minmax_split,
    split_cost,
    waterfill,
)

speeds_st = st.lists(st.integers(1, 20), min_size=1, max_size=4)


def test_eq7_ratios_equalise_x_times_a() -> None:
    a = eq7_coefficients(1e9, [1, 2, 5, 12], [80e9, 80e9, 40e9, 80e9])
    x = eq7_ratios(a)
    assert sum(x) == pytest.approx(1.0)
    products = [xj * aj for xj, aj in zip(x, a, strict=True)]
    assert products == pytest.approx([products[0]] * 4)
    # x_j is server j's share of the total speed k_j * eta_j
    assert x == pytest.approx([80 / 1400, 160 / 1400, 200 / 1400, 960 / 1400])


@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=10))
def test_eq7_property(a: list[float]) -> None:
    x = eq7_ratios(a)
    assert sum(x) == pytest.approx(1.0)
    assert [xj * aj for xj, aj in zip(x, a, strict=True)] == pytest.approx([x[0] * a[0]] * len(a))


def test_eq7_refuses_no_servers() -> None:
    with pytest.raises(InvalidPlan):
        eq7_ratios([])


def test_algorithm1_examples() -> None:
    # equal servers: the floors already sum to b
    assert algorithm1(8, eq7_ratios([1.0] * 8), [1.0] * 8) == [1] * 8
    # b = 3 on 2 equal servers: floors [1, 1], remainder to d_1 -> [2, 1]; moving one unit would
    # not lower the bottleneck (max(1, 2) >= t' = 2), so it stays
    assert algorithm1(3, eq7_ratios([1.0, 1.0]), [1.0, 1.0]) == [2, 1]
    # speeds 3:1 and b = 7: p = [5.25, 1.75], floors [5, 1], remainder to d_1 -> [6, 1]; moving one
    # unit to server 2 gives times [5/3, 2], max 2 >= t' = 6/3, so the move is undone
    assert algorithm1(7, eq7_ratios([1 / 3, 1.0]), [3.0, 1.0]) == [6, 1]
    # a skewed start is repaired: floors give [0, 0, 0] for tiny ratios, d_1 takes all 6
    parts = algorithm1(6, [0.1, 0.1, 0.1], [1.0, 1.0, 1.0])
    assert sum(parts) == 6 and max(parts) == 2


@settings(max_examples=200, deadline=None)
@given(speeds_st, st.integers(0, 9))
def test_algorithm1_sums_to_total_and_is_never_better_than_optimum(speeds: list[int], total: int) -> None:
    costs = [lambda n, s=s: n / s for s in speeds]
    parts = algorithm1(total, eq7_ratios([1.0 / s for s in speeds]), [float(s) for s in speeds])
    assert sum(parts) == total and min(parts) >= 0
    _, best = brute_force_split(total, costs)
    assert split_cost(parts, costs) >= best - 1e-12


def _nondecreasing_costs(draw: st.DrawFn, servers: int, total: int) -> list[list[float]]:
    rows = []
    for _ in range(servers):
        steps = draw(st.lists(st.floats(0.0, 5.0), min_size=total, max_size=total))
        fixed = draw(st.floats(0.0, 3.0))  # a per-request overhead: paid once a server gets a unit
        row, acc = [0.0], fixed
        for s in steps:
            acc += s
            row.append(acc)
        rows.append(row)
    return rows


@st.composite
def split_problems(draw: st.DrawFn) -> tuple[int, list[list[float]]]:
    servers = draw(st.integers(1, 4))
    total = draw(st.integers(0, 7))
    return total, _nondecreasing_costs(draw, servers, total)


@settings(max_examples=300, deadline=None)
@given(split_problems())
def test_waterfill_and_vectorised_split_are_optimal(problem: tuple[int, list[list[float]]]) -> None:
    total, rows = problem
    costs = [lambda n, r=r: r[n] for r in rows]
    _, best = brute_force_split(total, costs)
    greedy = waterfill(total, costs)
    assert sum(greedy) == total
    assert split_cost(greedy, costs) == pytest.approx(best)
    parts, value = minmax_split(total, np.array(rows))
    assert sum(parts) == total and min(parts) >= 0
    assert value == pytest.approx(best)
    assert split_cost(parts, costs) == pytest.approx(best)


def test_minmax_leaves_out_servers_that_do_not_help() -> None:
    # server 1's round trip alone costs more than doing everything on server 0
    parts, value = minmax_split(4, np.array([[0.0, 1, 2, 3, 4], [0.0, 10, 11, 12, 13]]))
    assert (parts, value) == ([4, 0], 4.0)
    # only a fixed cost per used server: one server is as fast as three, so use one
    parts, value = minmax_split(4, np.array([[0.0, 5, 5, 5, 5]] * 3))
    assert (sorted(parts), value) == ([0, 0, 4], 5.0)


def test_minmax_pays_zero_unit_costs() -> None:
    rows = np.array([[5.0, 6, 7], [0.0, 1, 2]])
    parts, value = minmax_split(2, rows)
    assert value == 5.0 and sum(parts) == 2
