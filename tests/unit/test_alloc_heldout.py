"""Judging a policy on held-out draws of server speeds and link rates (``edgesplit.alloc.heldout``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesplit.alloc.heldout import HELDOUT_SEED, heldout_draws, judge
from edgesplit.alloc.policy import load_policy
from edgesplit.alloc.train import TrainConfig, eval_envs, train

CONFIG = TrainConfig(model="digits-cnn", steps=160, seed=5, net_arch=(16, 16), learning_starts=80,
                     batch_size=32, eval_every=40, eval_conditions=3)


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("heldout")
    train(CONFIG, out, evaluate_policy=False)
    return out


def test_draws_are_seeded_and_apart_from_the_validation_draws() -> None:
    draws = heldout_draws(8, 4)
    assert draws == heldout_draws(8, 4, HELDOUT_SEED)
    assert draws != heldout_draws(8, 4, HELDOUT_SEED + 1)
    for d in draws:
        assert len(d.speed) == len(d.link) == 8
        assert all(0.5 <= x <= 1.0 for x in (*d.speed, *d.link))
    validation = {tuple(env.factors[0]) for env in eval_envs(CONFIG)}
    assert not validation & {d.speed for d in draws}
    assert all(d.speed != (1.0,) * 8 for d in draws)  # none is the nominal (training) scenario


def test_judge_reports_a_gap_per_held_out_draw(policy_dir: Path) -> None:
    policy = load_policy(policy_dir)
    draws = heldout_draws(8, 3)
    result = judge(policy, draws)
    assert [r["draw"] for r in result["draws"]] == [0, 1, 2]
    for row, draw in zip(result["draws"], draws, strict=True):
        assert row["speed"] == list(draw.speed)
        assert row["latency_s"] >= row["exact_s"] * (1 - 1e-9) >= row["lower_bound_s"] * (1 - 1e-9)
        assert row["gap"] == pytest.approx(row["latency_s"] / row["lower_bound_s"] - 1)
        assert row["gap_to_exact"] == pytest.approx(row["latency_s"] / row["exact_s"] - 1)
        assert np.asarray(row["allocation"]).sum(axis=1).tolist() == [20] * 8
    assert len({r["lower_bound_s"] for r in result["draws"]}) == 3  # the draws are different problems
    assert result["worst_gap"] == max(r["gap"] for r in result["draws"])
    assert judge(policy, draws)["draws"] == result["draws"]  # the same policy and draws, the same verdict
