"""The queue order (``edgesplit.queueing.QueueOrder``): its score and its sort key order tasks the same
way, by priority then arrival, or by effective priority with aging. The Lua that the Redis queue runs
is checked against it in ``tests/integration/test_queue_order_lua.py``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.queueing import QueueOrder
from services.orchestrator.queue import new_task_id

prio = st.integers(min_value=1, max_value=1000)
seq = st.integers(min_value=0, max_value=2**40 - 1)


@given(prio, seq, prio, seq)
def test_strict_score_orders_by_priority_then_arrival(p1: int, s1: int, p2: int, s2: int) -> None:
    order = QueueOrder()
    assert (order.score(p1, 0.0, s1) < order.score(p2, 0.0, s2)) == ((p1, s1) < (p2, s2))
    # the key orders the same way when arrival times follow the arrival counter
    assert (order.key(p1, float(s1), s1) < order.key(p2, float(s2), s2)) == ((p1, s1) < (p2, s2))


@given(prio, st.floats(0, 1e6), prio, st.floats(0, 1e6), st.floats(0.01, 1000))
def test_aged_score_orders_by_effective_priority_at_any_time(p1: int, t1: float, p2: int, t2: float,
                                                              aging: float) -> None:
    order = QueueOrder(aging)
    now = max(t1, t2) + 5.0
    e1 = order.effective_priority(p1, now - t1)
    e2 = order.effective_priority(p2, now - t2)
    s1, s2 = order.score(p1, t1, 1), order.score(p2, t2, 2)
    if abs(e1 - e2) > 1e-6 * (1 + abs(e1)):  # away from ties the orders agree
        assert (s1 < s2) == (e1 < e2)
        assert (order.key(p1, t1, 1) < order.key(p2, t2, 2)) == (e1 < e2)


def test_no_aging_keeps_the_priority() -> None:
    assert QueueOrder().effective_priority(3, 1e9) == 3.0
    assert QueueOrder(5.0).effective_priority(3, 10.0) == 1.0


def test_aging_is_continuous_and_unbounded() -> None:
    # the serving queue's rule (issue 16): no rounding to whole levels, no floor at priority 1
    order = QueueOrder(0.4)
    assert order.effective_priority(3, 1.0) == pytest.approx(0.5)
    assert order.effective_priority(1, 0.5) == pytest.approx(-0.25)


def test_lua_args_and_validation() -> None:
    assert QueueOrder().lua_args() == ("0.0", str(2**40))
    assert QueueOrder(0.25).lua_args()[0] == "0.25"
    with pytest.raises(ValueError, match="aging_s is -1"):
        QueueOrder(-1.0)


def test_task_ids_sort_by_creation() -> None:
    ids = [new_task_id() for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
