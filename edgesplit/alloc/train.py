"""Training TD3 / DDPG (stable-baselines3) on the sub-zone MDP, with the reward curve (fig. 6).

``train`` builds the environment of ``env.AllocEnv`` for a model on a scenario, trains with the
paper's Algorithm 2 (TD3: twin critics, delayed policy updates, target policy smoothing; random
actions for the first ``learning_starts`` steps, the paper's tau), and writes into ``out``:
``model.zip`` (the SB3 model), ``curve.csv`` (episode, step, reward, latency_s), ``curve.png`` and
``train.json`` (the configuration, the command that reproduces it, the trained policy's
allocation and its gap to the certified lower bound of ``bounds``), and ``eval.csv`` (the
deterministic policy's return every ``eval_every`` steps; the best weights are the ones saved,
``callbacks.Best``).

Everything random is seeded by ``seed`` (SB3's ``set_random_seed``, the environment, the action
noise); torch runs on one CPU thread, so the same seed gives the same trained actions.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgesplit.alloc.callbacks import callbacks
from edgesplit.alloc.cost import AllocSplit, build_problem
from edgesplit.alloc.env import ActionKind, AllocEnv, ObsKind
from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from edgesplit.plan.cluster import resolve_cluster

Algo = Literal["td3", "ddpg"]
ALGOS: tuple[Algo, ...] = ("td3", "ddpg")
Progress = Callable[[int], None]  # called with a number of steps done


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (the defaults are those of the shipped policies)."""

    model: str
    algo: Algo = "td3"
    steps: int = 10_000
    seed: int = 0
    scenario: str = "paper"
    scenario_seed: int = 0
    obs: ObsKind = "extended"
    action: ActionKind = "dithered"
    split: AllocSplit = "edgesplit"
    net_arch: tuple[int, ...] = (64, 64)
    learning_starts: int = 1_000
    learning_rate: float = 1e-3
    batch_size: int = 256
    gamma: float = 1.0
    noise_sigma: float = 0.2
    eval_every: int = 500
    eval_conditions: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    def command(self, out: str) -> str:
        """The ``edgesplit train-allocator`` command line that reproduces this run."""
        return (f"edgesplit train-allocator --algo {self.algo} --model {self.model} "
                f"--scenario {self.scenario} --steps {self.steps} --seed {self.seed} --obs {self.obs} "
                f"--action {self.action} --split {self.split} --noise-sigma {self.noise_sigma} "
                f"--eval-every {self.eval_every} --out {out}")


def make_env(config: TrainConfig) -> AllocEnv:
    """The environment a configuration trains on."""
    cluster = resolve_cluster(config.scenario, seed=config.scenario_seed)
    return AllocEnv(get_spec(config.model), cluster.servers, split=config.split, obs=config.obs,
                    action=config.action)


def eval_envs(config: TrainConfig) -> list[AllocEnv]:
    """Environments the best-policy selection plays on (``callbacks`` module docstring)."""
    env = make_env(config)
    if config.obs != "extended":
        return [env]
    rng = np.random.default_rng(config.seed + 2000)
    out = []
    for _ in range(config.eval_conditions):
        env = make_env(config)
        env.set_conditions(rng.uniform(*env.conditions.speed, env.n_servers),
                           rng.uniform(*env.conditions.link, env.n_servers))
        out.append(env)
    return out


def check_algo(algo: str) -> None:
    """InvalidInput unless ``algo`` is one of :data:`ALGOS`."""
    if algo not in ALGOS:
        raise InvalidInput(f"unknown algorithm {algo!r}; expected one of {', '.join(ALGOS)}")


def make_agent(config: TrainConfig, env: AllocEnv) -> Any:
    """A fresh SB3 TD3 or DDPG agent for ``env`` (small MLPs, CPU, seeded)."""
    import torch
    from stable_baselines3 import DDPG, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    check_algo(config.algo)
    torch.set_num_threads(1)
    n = env.n_servers
    noise = NormalActionNoise(np.zeros(n), config.noise_sigma * np.ones(n))
    cls = TD3 if config.algo == "td3" else DDPG
    return cls("MlpPolicy", env, learning_rate=config.learning_rate, buffer_size=max(config.steps, 1),
               learning_starts=config.learning_starts, batch_size=config.batch_size, gamma=config.gamma,
               action_noise=noise, policy_kwargs={"net_arch": list(config.net_arch)}, seed=config.seed,
               device="cpu", verbose=0)


def rollout(agent: Any, env: AllocEnv, seed: int = 0, keep_conditions: bool = False) -> np.ndarray:
    """The allocation ``alloc[m, i]`` the agent's deterministic policy makes in one episode."""
    obs, _ = env.reset(seed=seed, options={"keep_conditions": keep_conditions})
    while True:
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, done, _, info = env.step(action)
        if done:
            return np.asarray(info["allocation"])


def _scored(config: TrainConfig, agent: Any, env: AllocEnv) -> dict[str, Any]:
    from edgesplit.alloc.exact import best_allocation

    alloc = rollout(agent, env, keep_conditions=True)
    problem = build_problem(get_spec(config.model), env.servers, split=config.split)
    value = problem.value(alloc, "sum")
    bound = best_allocation(problem, "sum").lower_bound  # the strongest bound we have
    return {"allocation": alloc.tolist(), "latency_s": value, "lower_bound_s": bound,
            "gap": value / bound - 1}


def evaluate(config: TrainConfig, agent: Any, draws: int = 5) -> dict[str, Any]:
    """The trained policy's allocation at nominal conditions and its gap to the lower bound (sum);
    for the extended observation also the gaps under ``draws`` random conditions (seeded)."""
    env = make_env(config)
    env.set_conditions(np.ones(env.n_servers), np.ones(env.n_servers))
    summary = _scored(config, agent, env)
    if config.obs == "extended":
        rng = np.random.default_rng(config.seed + 1000)
        gaps = []
        for _ in range(draws):
            env.set_conditions(rng.uniform(*env.conditions.speed, env.n_servers),
                               rng.uniform(*env.conditions.link, env.n_servers))
            gaps.append(_scored(config, agent, env)["gap"])
        summary["gaps_random_conditions"] = gaps
    return summary


def train(config: TrainConfig, out: Path, progress: Progress | None = None,
          evaluate_policy: bool = True) -> dict[str, Any]:
    """Train, save ``model.zip``, ``curve.csv``, ``curve.png``, ``train.json`` into ``out``; return the
    summary written to ``train.json``."""
    if config.steps < 1:
        raise InvalidInput(f"--steps must be at least 1, got {config.steps}")
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(config)
    agent = make_agent(config, env)
    rows: list[dict[str, float]] = []
    evals: list[dict[str, float]] = []
    hooks = callbacks(rows, evals, progress, eval_envs(config), config.eval_every, config.learning_starts)
    agent.learn(total_timesteps=config.steps, callback=hooks)
    agent.save(out / "model.zip")
    write_curve(rows, out / "curve.csv")
    if evals:
        best = max(evals, key=lambda e: e["return"])
        _write_rows(evals, out / "eval.csv", ["step", "return"])
    plot_curves({f"{config.algo.upper()} {config.model}": rows}, out / "curve.png")
    summary: dict[str, Any] = {"config": {k: v for k, v in asdict(config).items() if k != "extra"},
                               "command": config.command(str(out)), "episodes": len(rows),
                               "kept_step": best["step"] if evals else config.steps}
    if evaluate_policy:
        summary.update(evaluate(config, agent))
    (out / "train.json").write_text(json.dumps(summary, indent=1))
    return summary


def write_curve(rows: list[dict[str, float]], path: Path) -> None:
    """``curve.csv``: one line per training episode."""
    _write_rows(rows, path, ["episode", "step", "reward", "latency_s"])


def _write_rows(rows: list[dict[str, float]], path: Path, fields: list[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(curves: dict[str, list[dict[str, float]]], path: Path, window: int = 50) -> None:
    """Episode reward (moving average over ``window`` episodes) against training steps, one line each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, rows in curves.items():
        ax.plot([r["step"] for r in rows], smooth([r["reward"] for r in rows], window), label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"episode reward (moving average of {window})")
    ax.set_title("Sub-zone allocation: reward during training (cf. paper fig. 6)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
