"""The paper's sub-zone MDP (section 4.2) as a gymnasium environment.

One episode allocates one resource zone, sub-zone by sub-zone (one step per conv, N steps):

* state, eq. (9): ``(c_1, ..., c_M, Z)`` with ``c_m`` the threads of server m's zone not yet
  given out, divided by its zone size (so in [0, 1]), and ``Z`` the sub-zones still to allocate,
  divided by N. ``obs="extended"`` appends each server's measured speed and link rate as fractions
  of the scenario's nominal values; these conditions are drawn at random at every reset.
* action, eq. (8): ``(r_1, ..., r_M)`` in [0, 1]. ``action="paper"``: server m gives
  ``floor(r_m * R_m)`` threads (``R_m`` its zone), clipped as in Algorithm 2 lines 11-17 so that at
  least one thread is left for every sub-zone still to come (and at least one is given); the last
  sub-zone takes what is left, so each row sums to the zone (eq. 5f). ``action="residual"``: the
  proportion is of the threads free beyond that reserve, ``1 + round(r_m * (c_m - Z))``, which needs
  no clipping; ``action="fair"``: the proportion is of twice the fair share of that spare,
  ``1 + round(r_m * 2 * (c_m - Z) / Z)`` (r = 0.5 is the even split of what is left, and no single
  sub-zone can take a server's whole zone, which keeps TD3's saturated actions reasonable).
  ``action="share"``: the proportion is of twice the stage's share of the threads left by the square
  root of its work, ``round(r_m * 2 * c_m * w_i / sum_{j >= i} w_j)`` with ``w_i = sqrt(FLOPs_i)``,
  clipped as in Algorithm 2 to ``[1, c_m - Z + 1]``:
  r = 0.5 is the continuous optimum (minimising ``sum_i W_i / c_i`` over stage capacities ``c_i``
  with a fixed total gives ``c_i`` proportional to ``sqrt(W_i)``, whatever the server speeds), so an
  untrained policy (actions about 0.5) starts there and TD3 learns the integer and speed corrections.
  ``action="dithered"``: the same target ``x = r_m * 2 * c_m * w_i / sum_{j >= i} w_j``, rounded as
  ``floor(x + u_{m,i})`` with the offset ``u_{m,i} = frac((m + 1/2) / M + i * phi)`` (``phi`` the
  golden ratio's fractional part, a low-discrepancy sequence) instead of ``floor(x + 1/2)``, then the
  same clipping. With ``share`` every server of equal zone rounds a stage alike, so a stage's
  capacity over the M servers jumps in steps of M threads; spreading the offsets over servers and
  stages makes the servers round up in turn, so the capacities track the continuous optimum (with
  r = 0.5 on vgg16-paper's 20 held-out draws: median 1.28% above the certified bound against 3.57%
  for ``share``; docs/ALLOCATION.md). Each server still rounds its own target, and the threads left
  (``c_m``) carry every rounding into the next sub-zones' targets.
* reward, eq. (10): minus the stage latency of the chosen column with the planner's optimal split
  (``plan.search``: best strategy, integer min-max split), divided by ``scale_s``: the sum over
  stages of the even allocation's stage latencies under the episode's conditions. The even
  allocation's episode return is thus -1 and the return is ``-(eq. 6 latency) / scale_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from edgesplit.alloc.cost import AllocSplit, IntArray, check_zone, even_allocation, split_strategies
from edgesplit.errors import InvalidInput
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server
from edgesplit.plan.search import SpecFacts, UnitLoads, cost_table, unit_loads, valid_strategies
from edgesplit.split import conv_groups

ObsKind = Literal["paper", "extended"]
ActionKind = Literal["paper", "residual", "fair", "share", "dithered"]
OBS_KINDS: tuple[ObsKind, ...] = ("paper", "extended")
ACTION_KINDS: tuple[ActionKind, ...] = ("paper", "residual", "fair", "share", "dithered")
GOLDEN = 0.6180339887498949  # fractional part of the golden ratio: the ``dithered`` offsets' step


@dataclass(frozen=True)
class Conditions:
    """Ranges the extended observation draws from at each reset: factors of the nominal server
    speed (FLOPS per thread) and link rate, uniform in ``[low, high]`` and independent per server."""

    speed: tuple[float, float] = (0.5, 1.0)
    link: tuple[float, float] = (0.5, 1.0)


class StageModel:
    """Stage latencies of a model on a set of servers, from the planner's unit loads (seconds)."""

    def __init__(self, spec: ModelSpec, split: AllocSplit) -> None:
        f = SpecFacts.of(spec)
        allowed = split_strategies(split)
        self.groups = conv_groups(spec)
        self.loads: list[list[tuple[int, UnitLoads]]] = []
        for a, b in self.groups:
            per = [unit_loads(f, a, b, s) for s in valid_strategies(spec, a, b, allowed)]
            self.loads.append([(len(ld.flops) - 1, ld) for ld in per])
        # sqrt of each stage's FLOPs (its first strategy's, all units): the ``share`` action's weights
        self.weights = np.sqrt([float(per[0][1].flops[-1]) for per in self.loads])

    def latency(self, i: int, servers: Sequence[Server], column: Sequence[int]) -> float:
        """Stage i's latency with threads ``column[m]``: the D-th smallest unit cost (``cost.py``)."""
        best = np.inf
        for units, loads in self.loads[i]:
            values = cost_table(loads, servers, column)[:, 1:].ravel()
            best = min(best, float(np.partition(values, units - 1)[units - 1]))
        return best

    def total(self, servers: Sequence[Server], alloc: IntArray) -> float:
        """Sum of stage latencies (eq. 6) of an allocation ``alloc[m, i]``."""
        return sum(self.latency(i, servers, alloc[:, i].tolist()) for i in range(len(self.groups)))


class AllocEnv(gym.Env[np.ndarray, np.ndarray]):
    """The sub-zone allocation MDP of one CNN's zone on a set of servers (module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's attribute)

    def __init__(self, spec: ModelSpec, servers: Sequence[Server], zone: Sequence[int] | None = None,
                 split: AllocSplit = "edgesplit", obs: ObsKind = "paper", action: ActionKind = "paper",
                 conditions: Conditions | None = None) -> None:
        if obs not in OBS_KINDS or action not in ACTION_KINDS:
            raise InvalidInput(f"obs must be one of {OBS_KINDS} and action one of {ACTION_KINDS}")
        self.model = StageModel(spec, split)
        self.nominal = tuple(servers)
        sizes = [s.threads for s in servers] if zone is None else list(zone)
        self.zone = np.array(sizes, dtype=np.int64)
        self.n_servers, self.n_stages = len(self.nominal), len(self.model.groups)
        check_zone(self.zone.tolist(), self.n_stages, spec.name)
        self.obs_kind, self.action_kind = obs, action
        self.conditions = conditions or Conditions()
        width = self.n_servers + 1 + (2 * self.n_servers if obs == "extended" else 0)
        self.observation_space = spaces.Box(0.0, 1.0, (width,), np.float32)
        self.action_space = spaces.Box(0.0, 1.0, (self.n_servers,), np.float32)
        self.factors = np.ones((2, self.n_servers))
        # the ``dithered`` action's rounding offsets u[i, m] (module docstring)
        m, i = np.arange(self.n_servers), np.arange(self.n_stages)[:, None]
        self.offsets = np.mod((m + 0.5) / self.n_servers + i * GOLDEN, 1.0)
        self.servers: tuple[Server, ...] = self.nominal
        self._reset_state()

    def _reset_state(self) -> None:
        self.stage = 0
        self.left = self.zone.copy()
        self.alloc = np.zeros((self.n_servers, self.n_stages), dtype=np.int64)
        self.scale_s = self.model.total(self.servers, even_allocation(self.zone.tolist(), self.n_stages))

    def set_conditions(self, speed: Sequence[float] | np.ndarray, link: Sequence[float] | np.ndarray) -> None:
        """Fix the servers' speed and link factors (of nominal) until the next random draw."""
        self.factors = np.array([list(speed), list(link)], dtype=np.float64)
        triples = zip(self.nominal, self.factors[0], self.factors[1], strict=True)
        self.servers = tuple(replace(s, flops_per_thread=s.flops_per_thread * fs, link_bps=s.link_bps * fl)
                             for s, fs, fl in triples)

    def _observe(self) -> np.ndarray:
        to_go = np.array([(self.n_stages - self.stage) / self.n_stages])
        parts: list[np.ndarray] = [self.left / self.zone, to_go]
        if self.obs_kind == "extended":
            parts += [self.factors[0] / self.conditions.speed[1], self.factors[1] / self.conditions.link[1]]
        return np.clip(np.concatenate(parts), 0.0, 1.0).astype(np.float32)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.obs_kind == "extended" and not (options or {}).get("keep_conditions", False):
            self.set_conditions(self.np_random.uniform(*self.conditions.speed, self.n_servers),
                                self.np_random.uniform(*self.conditions.link, self.n_servers))
        self._reset_state()
        return self._observe(), {"scale_s": self.scale_s}

    def threads(self, action: np.ndarray) -> IntArray:
        """Threads per server for the current sub-zone from an action (eq. 8 + Algorithm 2 clipping)."""
        r = np.clip(np.asarray(action, dtype=np.float64), 0.0, 1.0)
        remaining = self.n_stages - self.stage  # sub-zones still to allocate, this one included
        if remaining == 1:
            return self.left.copy()
        spare = self.left - remaining  # threads free beyond one for each sub-zone to come
        if self.action_kind == "residual":
            return 1 + np.floor(r * spare + 0.5).astype(np.int64)
        if self.action_kind == "fair":
            return 1 + np.floor(r * 2.0 * spare / remaining + 0.5).astype(np.int64)
        if self.action_kind in ("share", "dithered"):
            share = self.model.weights[self.stage] / self.model.weights[self.stage:].sum()
            offset = self.offsets[self.stage] if self.action_kind == "dithered" else 0.5
            return np.clip(np.floor(r * 2.0 * share * self.left + offset).astype(np.int64), 1, spare + 1)
        return np.clip(np.floor(r * self.zone).astype(np.int64), 1, spare + 1)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        column = self.threads(action)
        latency = self.model.latency(self.stage, self.servers, column.tolist())
        self.alloc[:, self.stage] = column
        self.left -= column
        self.stage += 1
        done = self.stage == self.n_stages
        info: dict[str, Any] = {"latency_s": latency, "threads": column.tolist()}
        if done:
            info["allocation"] = self.alloc.copy()
        return self._observe(), -latency / self.scale_s, done, False, info
