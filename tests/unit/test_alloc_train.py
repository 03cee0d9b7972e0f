"""TD3/DDPG training on the MDP (tiny networks, a few hundred steps): outputs, determinism, policies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edgesplit.alloc.callbacks import episode_return
from edgesplit.alloc.policy import load_policy, policy_allocation
from edgesplit.alloc.train import TrainConfig, make_agent, make_env, rollout, train
from edgesplit.models import get_spec
from edgesplit.plan.cluster import scenario


def tiny(algo: str = "td3", seed: int = 3, obs: str = "paper") -> TrainConfig:
    return TrainConfig(model="digits-cnn", algo=algo, steps=240, seed=seed, obs=obs,  # type: ignore[arg-type]
                       net_arch=(16, 16), learning_starts=80, batch_size=32, eval_every=40)


def _trained_actions(config: TrainConfig) -> np.ndarray:
    env = make_env(config)
    agent = make_agent(config, env)
    agent.learn(total_timesteps=config.steps)
    probe = np.random.default_rng(0).uniform(0, 1, (16, env.observation_space.shape[0])).astype(np.float32)
    return np.asarray(agent.predict(probe, deterministic=True)[0])


def test_same_seed_same_trained_actions() -> None:
    first = _trained_actions(tiny(seed=3))
    second = _trained_actions(tiny(seed=3))
    other = _trained_actions(tiny(seed=4))
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("algo", ["td3", "ddpg"])
def test_train_writes_model_curve_and_summary(tmp_path: Path, algo: str) -> None:
    summary = train(tiny(algo), tmp_path)
    wanted = {"model.zip", "curve.csv", "curve.png", "train.json", "eval.csv"}
    assert {p.name for p in tmp_path.iterdir()} >= wanted
    with (tmp_path / "curve.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["episodes"] == 240 // 2  # digits-cnn has 2 convs: 2 steps per episode
    assert all(float(r["reward"]) < 0 for r in rows)
    saved = json.loads((tmp_path / "train.json").read_text())
    assert saved["command"].startswith(f"edgesplit train-allocator --algo {algo} --model digits-cnn")
    assert saved["gap"] >= 0 and saved["latency_s"] >= saved["lower_bound_s"]
    with (tmp_path / "eval.csv").open() as fh:
        evals = list(csv.DictReader(fh))
    assert [int(e["step"]) for e in evals] == [80, 120, 160, 200, 240]
    best = max(evals, key=lambda e: float(e["return"]))
    assert saved["kept_step"] == int(best["step"])

    policy = load_policy(tmp_path, algo)  # the kept weights are the best evaluated ones
    kept = episode_return(policy.agent, make_env(tiny(algo)))
    assert kept == pytest.approx(float(best["return"]), rel=1e-6)
    servers = scenario("paper").servers
    alloc = policy_allocation(policy, get_spec("digits-cnn"), servers)
    assert (alloc >= 1).all() and (alloc.sum(axis=1) == 20).all()
    assert alloc.tolist() == saved["allocation"]


def test_extended_policy_reads_the_measured_conditions(tmp_path: Path) -> None:
    train(tiny(obs="extended"), tmp_path, evaluate_policy=False)
    policy = load_policy(tmp_path / "model.zip")
    nominal = scenario("paper").servers
    slow = tuple(s.__class__(s.name, s.threads, s.flops_per_thread * (0.5 if m < 4 else 1.0), s.link_bps)
                 for m, s in enumerate(nominal))
    config = tiny(obs="extended")
    env = make_env(config)
    env.set_conditions([0.5] * 4 + [1.0] * 4, [1.0] * 8)
    want = rollout(policy.agent, env, keep_conditions=True)
    assert policy_allocation(policy, get_spec("digits-cnn"), slow).tolist() == want.tolist()
