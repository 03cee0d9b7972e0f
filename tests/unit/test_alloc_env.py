"""The paper's MDP as a gymnasium env: env_checker, Algorithm 2 clipping, eq. (10) reward, extended obs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.alloc.cost import build_problem, even_allocation
from edgesplit.alloc.env import AllocEnv
from edgesplit.models import get_spec
from edgesplit.plan.cluster import scenario

SERVERS = scenario("paper").servers
SPEC = get_spec("alexnet-paper")


@pytest.mark.parametrize("obs", ["paper", "extended"])
@pytest.mark.parametrize("action", ["paper", "residual", "share", "dithered"])
def test_env_checker_passes(obs: str, action: str) -> None:
    env = AllocEnv(SPEC, SERVERS, obs=obs, action=action)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning (bounds, dtypes, determinism) fails the test
        check_env(env, skip_render_check=True)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["paper", "residual", "share", "dithered"]),
       st.lists(st.lists(st.sampled_from([0.0, 0.03, 0.5, 0.97, 1.0]), min_size=8, max_size=8),
                min_size=5, max_size=5))
def test_clipping_keeps_every_allocation_valid(action: str, actions: list[list[float]]) -> None:
    env = AllocEnv(SPEC, SERVERS, zone=[6, 9, 20, 5, 7, 20, 11, 8], action=action)  # type: ignore[arg-type]
    obs, _ = env.reset(seed=0)
    for i, a in enumerate(actions):
        left = env.left.copy()
        column = env.threads(np.array(a, dtype=np.float32))
        assert (column >= 1).all() and (column <= left - (env.n_stages - i - 1)).all()
        obs, _, finished, _, info = env.step(np.array(a, dtype=np.float32))
        assert env.observation_space.contains(obs)
        assert finished == (i == env.n_stages - 1)
    alloc = info["allocation"]
    assert (alloc >= 1).all() and (alloc.sum(axis=1) == env.zone).all()


def test_paper_action_is_floor_of_r_times_the_zone() -> None:
    env = AllocEnv(SPEC, SERVERS, action="paper")
    env.reset(seed=0)
    column = env.threads(np.full(8, 0.26, dtype=np.float32))  # floor(0.26 * 20) = 5
    assert column.tolist() == [5] * 8
    assert env.threads(np.ones(8, dtype=np.float32)).tolist() == [16] * 8  # clipped: 4 sub-zones to come


def test_rewards_are_minus_stage_latencies_over_the_even_allocation() -> None:
    env = AllocEnv(SPEC, SERVERS, action="paper")
    _, info = env.reset(seed=0)
    problem = build_problem(SPEC, SERVERS)
    even = even_allocation(problem.zone, problem.n_stages)
    assert info["scale_s"] == pytest.approx(problem.value(even, "sum"), rel=1e-12)
    total = 0.0
    for _ in range(env.n_stages):  # floor(0.2 * 20) = 4 threads per sub-zone: the even allocation
        _, reward, _, _, step = env.step(np.full(8, 0.2, dtype=np.float32))
        total += reward
        assert reward == pytest.approx(-step["latency_s"] / info["scale_s"])
    assert (step["allocation"] == even).all() and total == pytest.approx(-1.0)


def test_extended_observation_draws_conditions_per_episode() -> None:
    env = AllocEnv(SPEC, SERVERS, obs="extended")
    first, _ = env.reset(seed=1)
    second, _ = env.reset()
    assert first.shape == (8 + 1 + 16,)
    assert not np.allclose(first[9:], second[9:])
    again, _ = env.reset(seed=1)
    assert np.array_equal(first, again)
    assert all(0.5 <= s.flops_per_thread / n.flops_per_thread <= 1.0 for s, n in zip(env.servers, SERVERS,
                                                                                     strict=True))
    kept, _ = env.reset(options={"keep_conditions": True})
    assert np.array_equal(kept[9:], again[9:])


def test_share_action_at_one_half_splits_each_zone_by_the_sqrt_of_the_convs_flops() -> None:
    """The untrained policy's point (r = 0.5): each server's threads go to the convs in proportion to the
    square root of their FLOPs, rounded stage by stage, at least one thread each."""
    env = AllocEnv(SPEC, SERVERS, action="share")
    env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(np.full(8, 0.5, dtype=np.float32))
    alloc = info["allocation"]
    assert (alloc == alloc[0]).all() and alloc[0].sum() == 20  # the same row on every (equal) zone
    weights = env.model.weights / env.model.weights.sum()
    assert np.abs(alloc[0] - 20 * weights).max() <= 1.0
    assert alloc[0].tolist() == [1, 6, 7, 5, 1]


def test_dithered_action_rounds_the_servers_in_turn_toward_the_sqrt_flops_split() -> None:
    """At r = 0.5 every server aims at the same ``share`` targets, but the rounding offsets differ by
    server and stage, so the servers' rows differ and each stage's total over the 8 servers is within
    the servers' count of the continuous target (``share`` rounds them all alike: steps of 8 threads)."""
    spec = get_spec("vgg16-paper")  # 13 convs on 20 threads: 1 or 2 threads a stage on each server
    totals = {}
    for kind in ("share", "dithered"):
        env = AllocEnv(spec, SERVERS, action=kind)  # type: ignore[arg-type]
        env.reset(seed=0)
        done = False
        while not done:
            _, _, done, _, info = env.step(np.full(8, 0.5, dtype=np.float32))
        alloc = info["allocation"]
        assert (alloc >= 1).all() and (alloc.sum(axis=1) == 20).all()
        totals[kind] = alloc.sum(axis=0)
        if kind == "share":
            assert (alloc == alloc[0]).all() and set(totals[kind].tolist()) <= {8, 16, 24}
        else:
            assert len({tuple(row) for row in alloc.tolist()}) > 1
    target = 8 * 20 * env.model.weights / env.model.weights.sum()
    assert np.abs(totals["dithered"] - target).sum() < np.abs(totals["share"] - target).sum()
    problem = build_problem(spec, SERVERS)
    assert problem.value(alloc, "sum") < problem.value(np.tile(totals["share"] // 8, (8, 1)), "sum")
