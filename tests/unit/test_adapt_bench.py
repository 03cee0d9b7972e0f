"""``edgesplit bench adapt`` slows the executor with the most units down, and refuses a plan that puts
nothing on the edge (all in the cloud), where it would otherwise time a recovery from nothing."""

from __future__ import annotations

import pytest

from edgesplit.errors import InvalidPlan
from tooling.allocator_bench import busiest


def test_the_executor_with_the_most_units_is_slowed() -> None:
    assert busiest({"executor-0": 1, "executor-1": 3, "executor-2": 2}) == "executor-1"


def test_a_plan_with_nothing_on_the_edge_is_refused_with_what_to_change() -> None:
    with pytest.raises(InvalidPlan, match=r"no layer on an edge host.*--cloud-cpus"):
        busiest({"executor-0": 0, "executor-1": 0})
