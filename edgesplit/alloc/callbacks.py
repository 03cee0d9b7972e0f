"""Training callbacks: the reward curve, progress, and keeping the best deterministic policy.

``Best``: every ``eval_every`` steps (after the random warm-up) the deterministic policy plays one
episode on each evaluation environment (the nominal scenario; for the extended observation, the
validation draws: ``eval_conditions`` fixed conditions drawn with ``seed + 2000``, never the
held-out draws of ``heldout``) and the weights with the best mean return are kept;
training ends by restoring them. The standard "best model" selection of SB3's ``EvalCallback``,
done in memory. It changes nothing in the training itself (the evaluation environments are
separate and deterministic actions draw no random numbers), so the same seed still gives the same
result. TD3's deterministic policy oscillates between good and poor allocations while it trains
(one seed of alexnet-paper ended 17% above the bound, after being within 2% earlier), which this
removes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgesplit.alloc.env import AllocEnv

Progress = Callable[[int], None]


def episode_return(agent: Any, env: AllocEnv) -> float:
    """Return of one episode of the agent's deterministic policy, the env's conditions kept."""
    obs, _ = env.reset(seed=0, options={"keep_conditions": True})
    total = 0.0
    while True:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, done, _, _ = env.step(action)
        total += float(reward)
        if done:
            return total


def callbacks(rows: list[dict[str, float]], evals: list[dict[str, float]], progress: Progress | None,
              eval_envs: Sequence[AllocEnv], eval_every: int, learning_starts: int) -> Any:
    """The curve/progress callback and the best-policy callback, as one SB3 ``CallbackList``."""
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    class Curve(BaseCallback):
        """Collects each training episode's return and latency; reports progress every 100 steps."""

        def __init__(self) -> None:
            super().__init__()
            self.reward = 0.0
            self.latency = 0.0

        def _on_step(self) -> bool:
            info = self.locals["infos"][0]
            self.reward += float(self.locals["rewards"][0])
            self.latency += float(info["latency_s"])
            if self.locals["dones"][0]:
                rows.append({"episode": len(rows) + 1, "step": self.num_timesteps,
                             "reward": self.reward, "latency_s": self.latency})
                self.reward = self.latency = 0.0
            if progress is not None and self.num_timesteps % 100 == 0:
                progress(100)
            return True

    class Best(BaseCallback):
        """Keeps the weights whose deterministic policy has the best mean evaluation return."""

        def __init__(self) -> None:
            super().__init__()
            self.best = -np.inf
            self.state: dict[str, Any] | None = None

        def _on_step(self) -> bool:
            step = self.num_timesteps
            if eval_every > 0 and step >= learning_starts and step % eval_every == 0:
                value = float(np.mean([episode_return(self.model, env) for env in eval_envs]))
                evals.append({"step": step, "return": value})
                if value > self.best:
                    self.best, self.state = value, copy.deepcopy(self.model.policy.state_dict())
            return True

        def _on_training_end(self) -> None:
            if self.state is not None:
                self.model.policy.load_state_dict(self.state)

    return CallbackList([Curve(), Best()])
