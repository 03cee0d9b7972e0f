"""The allocation policies' registry: one object per name, the Literal of settings and CLI, resolving."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from edgesplit.alloc.allocate import allocate
from edgesplit.alloc.cost import build_problem, even_allocation
from edgesplit.alloc.exact import best_allocation, flops_share_allocation
from edgesplit.alloc.registry import ALLOC_POLICIES, AllocRequest, TrainedPolicy, resolve
from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from edgesplit.plan.cluster import scenario
from edgesplit.type_aliases import AllocPolicyName
from services.allocator.settings import Policy

SPEC = get_spec("digits-cnn")
SERVERS = scenario("paper").servers[:3]


def test_the_registry_and_the_literal_name_the_same_policies() -> None:
    assert ALLOC_POLICIES.names == get_args(AllocPolicyName)
    assert get_args(Policy) == get_args(AllocPolicyName)  # the allocator's settings take the registry's names
    assert all(p.name == name for name, p in ALLOC_POLICIES.items())
    assert {n for n, p in ALLOC_POLICIES.items() if p.learned} == {"td3", "ddpg"}


def test_each_policy_object_makes_its_allocation() -> None:
    problem = build_problem(SPEC, SERVERS)
    request = AllocRequest(SPEC, SERVERS, problem)
    assert not request.exact_known
    assert ALLOC_POLICIES["even"].allocation(request).tolist() == even_allocation(problem.zone, 2).tolist()
    assert not request.exact_known  # the even split needs no exact allocator
    share = ALLOC_POLICIES["flops-share"].allocation(request)
    assert share.tolist() == flops_share_allocation(problem).tolist()
    exact = ALLOC_POLICIES["exact"].allocation(request)
    assert request.exact_known
    assert problem.value(exact, "sum") == pytest.approx(best_allocation(problem, "sum").value)


def test_resolve_reads_a_file_only_for_learned_policies(tmp_path: Path) -> None:
    policy = resolve(f"td3:{tmp_path}")
    assert isinstance(policy, TrainedPolicy) and policy.learned
    assert policy.path == tmp_path and policy.label == f"td3:{tmp_path}"
    assert resolve("td3") is ALLOC_POLICIES["td3"]
    with pytest.raises(InvalidInput, match="takes no file"):
        resolve(f"exact:{tmp_path}")
    with pytest.raises(InvalidInput, match=re.escape("unknown policy 'greedy'; expected exact | even")):
        resolve("greedy")


def test_allocate_dispatches_through_the_registry() -> None:  # exact and even: test_alloc_commands
    report = allocate(SPEC, SERVERS, "flops-share")
    assert report.policy == "flops-share"
    assert report.alloc.tolist() == flops_share_allocation(build_problem(SPEC, SERVERS)).tolist()
    assert (report.alloc.sum(axis=1) == np.array([20, 20, 20])).all() and report.gap >= -1e-9
