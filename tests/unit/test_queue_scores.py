"""Queue scores: strict priorities order by (priority, arrival); aged scores order by effective priority."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.orchestrator.queue import aged_score, effective_priority, new_task_id, strict_score

prio = st.integers(min_value=1, max_value=1000)
seq = st.integers(min_value=0, max_value=2**40 - 1)


@given(prio, seq, prio, seq)
def test_strict_score_orders_by_priority_then_arrival(p1: int, s1: int, p2: int, s2: int) -> None:
    assert (strict_score(p1, s1) < strict_score(p2, s2)) == ((p1, s1) < (p2, s2))


@given(prio, st.floats(0, 1e6), prio, st.floats(0, 1e6), st.floats(0.01, 1000))
def test_aged_score_orders_by_effective_priority_at_any_time(p1: int, t1: float, p2: int, t2: float,
                                                              aging: float) -> None:
    now = max(t1, t2) + 5.0
    e1 = effective_priority(p1, now - t1, aging)
    e2 = effective_priority(p2, now - t2, aging)
    s1, s2 = aged_score(p1, t1, aging), aged_score(p2, t2, aging)
    if abs(e1 - e2) > 1e-6 * (1 + abs(e1)):  # away from ties the two orders agree
        assert (s1 < s2) == (e1 < e2)


def test_no_aging_keeps_the_priority() -> None:
    assert effective_priority(3, 1e9, 0.0) == 3.0
    assert effective_priority(3, 10.0, 5.0) == 1.0


def test_task_ids_sort_by_creation() -> None:
    ids = [new_task_id() for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
