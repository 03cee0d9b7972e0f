"""Trained allocation policies: the shipped ones, loading a saved SB3 model, turning actions into threads.

A policy is an SB3 ``model.zip`` with, beside it, a JSON file of the same stem (``train.json`` for a
training output directory) that records how it was trained: model, algo, obs, action, split,
scenario and scenario seed, seed, steps and the command. The shipped policies live in
``edgesplit/alloc/policies/`` as ``{model}-{algo}[-extended][-paper-split].zip`` + ``.json``: a
policy is trained for one split family (``cost.py``) and is poor on the other one (the TD3
alexnet-paper policy of the edgesplit split is 30% above the bound on the paper's kernel-rows).
``-extended`` policies read each server's measured speed and link rate (``env.py``); the ``td3``
entry of ``registry.ALLOC_POLICIES`` (``edgesplit allocate --policy td3``, the allocator service)
uses the extended policy of a model when one ships, else the paper-observation one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesplit.alloc.cost import IntArray
from edgesplit.alloc.env import AllocEnv
from edgesplit.alloc.train import ALGOS, rollout
from edgesplit.errors import InvalidInput, ModelNotFound
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server, resolve_cluster

POLICY_DIR = Path(__file__).with_name("policies")


@dataclass(frozen=True)
class LoadedPolicy:
    """An SB3 agent and the metadata of its training (see module docstring)."""

    agent: Any
    meta: dict[str, Any]
    path: Path

    @property
    def algo(self) -> str:
        return str(self.meta["algo"])


def shipped_path(model: str, algo: str = "td3", obs: str = "paper", split: str = "edgesplit") -> Path:
    """Where the shipped policy for ``model`` is (it may not exist)."""
    suffix = ("-extended" if obs == "extended" else "") + ("-paper-split" if split == "paper" else "")
    return POLICY_DIR / f"{model}-{algo}{suffix}.zip"


def _meta(path: Path) -> dict[str, Any]:
    for candidate in (path.with_suffix(".json"), path.parent / "train.json"):
        if candidate.is_file():
            raw = json.loads(candidate.read_text())
            return dict(raw.get("config", raw))
    raise InvalidInput(f"policy {path}: no {path.with_suffix('.json').name} or train.json beside it to say "
                       "how it was trained")


def load_policy(path: str | Path, algo: str | None = None) -> LoadedPolicy:
    """Load a saved TD3/DDPG model; ``path`` may be a training output directory (its ``model.zip``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.zip"
    if not p.is_file():
        raise ModelNotFound(f"no policy file at {p}")
    meta = _meta(p)
    algo = algo or str(meta.get("algo", "td3"))
    if algo not in ALGOS or meta.get("algo", algo) != algo:
        raise InvalidInput(f"policy {p} was trained with {meta.get('algo')!r}, asked to load it as {algo!r}")
    from stable_baselines3 import DDPG, TD3

    cls = TD3 if algo == "td3" else DDPG
    return LoadedPolicy(cls.load(str(p), device="cpu"), {**meta, "algo": algo}, p)


def shipped_policy(model: str, algo: str = "td3", obs: str = "paper",
                   split: str = "edgesplit") -> LoadedPolicy:
    """The shipped policy for ``model``; ModelNotFound (with how to train one) if none ships."""
    p = shipped_path(model, algo, obs, split)
    if not p.is_file():
        raise ModelNotFound(f"no shipped {algo} policy ({obs} observation, {split} split) for {model}; "
                            f"train one with `edgesplit train-allocator --algo {algo} --model {model} "
                            f"--split {split} --out DIR` and pass --policy {algo}:DIR")
    return load_policy(p, algo)


def policy_env(policy: LoadedPolicy, spec: ModelSpec, servers: Sequence[Server],
               zone: Sequence[int] | None = None) -> AllocEnv:
    """The environment the policy acts in for ``servers`` (the measured cluster).

    With the paper observation the policy does not see the servers' conditions: the environment is
    built on ``servers`` as they are. With the extended one it is built on the policy's training
    scenario and the conditions are each server's speed and link as factors of that scenario's.
    """
    meta = policy.meta
    if meta.get("model") not in (None, spec.name):
        raise InvalidInput(f"policy {policy.path} was trained for {meta['model']}, not {spec.name}")
    obs, action, split = meta.get("obs", "paper"), meta.get("action", "paper"), meta.get("split", "edgesplit")
    if obs != "extended":
        return AllocEnv(spec, servers, zone, split=split, obs="paper", action=action)
    nominal = resolve_cluster(meta.get("scenario", "paper"), seed=int(meta.get("scenario_seed", 0))).servers
    if len(nominal) != len(servers):
        raise InvalidInput(f"policy {policy.path} was trained for {len(nominal)} servers, got {len(servers)}")
    zone = [s.threads for s in servers] if zone is None else list(zone)
    env = AllocEnv(spec, nominal, zone, split=split, obs="extended", action=action)
    pairs = list(zip(servers, nominal, strict=True))
    env.set_conditions([s.flops_per_thread / n.flops_per_thread for s, n in pairs],
                       [s.link_bps / n.link_bps for s, n in pairs])
    return env


def policy_allocation(policy: LoadedPolicy, spec: ModelSpec, servers: Sequence[Server],
                      zone: Sequence[int] | None = None) -> IntArray:
    """The allocation ``alloc[m, i]`` the policy's deterministic actions make for ``servers``."""
    env = policy_env(policy, spec, servers, zone)
    if env.action_space.shape != policy.agent.action_space.shape:
        raise InvalidInput(f"policy {policy.path} acts on {policy.agent.action_space.shape[0]} servers, "
                           f"the cluster has {env.n_servers}")
    return np.asarray(rollout(policy.agent, env, keep_conditions=True), dtype=np.int64)
