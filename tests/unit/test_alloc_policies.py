"""The shipped TD3 policies: they load, act as recorded in their JSON, are feasible on held-out draws."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesplit.alloc import exact
from edgesplit.alloc.allocate import allocate
from edgesplit.alloc.heldout import heldout_draws
from edgesplit.alloc.policy import POLICY_DIR, load_policy, policy_allocation, policy_env
from edgesplit.alloc.registry import ALLOC_POLICIES, TrainedPolicy
from edgesplit.models import get_spec
from edgesplit.plan.cluster import resolve_cluster

SHIPPED = sorted(POLICY_DIR.glob("*.zip"))


def test_the_expected_policies_ship() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"alexnet-paper-td3", "vgg16-paper-td3", "alexnet-paper-td3-extended",
            "vgg16-paper-td3-extended"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_policy_reproduces_its_recorded_allocation(path: object) -> None:
    policy = load_policy(path)  # type: ignore[arg-type]
    meta = json.loads(policy.path.with_suffix(".json").read_text())
    config = meta["config"]
    head = f"edgesplit train-allocator --algo {config['algo']} --model {config['model']}"
    assert meta["command"].startswith(head)
    assert f"--seed {config['seed']}" in meta["command"] and f"--steps {config['steps']}" in meta["command"]
    servers = resolve_cluster(config["scenario"], seed=config["scenario_seed"]).servers
    env = policy_env(policy, get_spec(config["model"]), servers)
    assert np.allclose(env.factors, 1.0)  # nominal conditions for the extended observation
    alloc = policy_allocation(policy, get_spec(config["model"]), servers)
    assert alloc.tolist() == meta["allocation"]
    assert policy.path.stat().st_size < 1_000_000


@pytest.mark.parametrize("model", ["alexnet-paper", "vgg16-paper"])
def test_the_td3_entry_serves_the_speed_aware_policy_feasibly_on_a_held_out_draw(
        model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact, "DUAL_ITERATIONS", 2)  # feasibility here; the dual bound: test_alloc_dual
    td3 = ALLOC_POLICIES["td3"]
    assert isinstance(td3, TrainedPolicy)
    spec = get_spec(model)
    assert td3.load(spec).path.stem == f"{model}-td3-extended"
    (draw,) = heldout_draws(8, 1)
    servers = draw.servers(resolve_cluster("paper").servers)
    report = allocate(spec, servers, "td3")
    assert (report.alloc >= 1).all() and (report.alloc.sum(axis=1) == 20).all()  # eq. 5d, 5f
    again = policy_allocation(td3.load(spec), spec, servers)
    assert again.tolist() == report.alloc.tolist()  # deterministic actions
    assert report.gap >= 0


def test_shipped_td3_meets_the_gap_target_on_alexnet() -> None:
    report = allocate(get_spec("alexnet-paper"), resolve_cluster("paper").servers, "td3", "sum")
    assert report.split == "edgesplit"
    assert 0 <= report.gap <= 0.05
