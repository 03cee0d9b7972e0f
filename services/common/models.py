"""The models a service deploys: their specs and torch modules, loaded once at start-up.

Weights come from ``<weights_dir>/<model>.safetensors`` when that file exists, else from the seed,
so that every process (executors, cloud, orchestrator) builds the same weights for the same model.
The executor keeps only the edge layers (``part="edge"``): it never builds the fully connected ones,
whose seeded weights are drawn after the convs' and so do not change them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from torch import nn

from edgesplit.errors import InvalidSpec, ModelNotFound, Unavailable
from edgesplit.models import Flatten, Linear, ModelSpec, get_spec, load_spec_file
from edgesplit.models.build import build_module, load_model

log = logging.getLogger("edgesplit.services")

Part = Literal["edge", "cloud", "all"]


@dataclass(frozen=True)
class Deployed:
    """One deployed model: its spec, the torch layers the service runs, and where weights came from."""

    spec: ModelSpec
    module: nn.Sequential
    weights: str


def deployment_specs(models: list[str], model_files: list[Path]) -> dict[str, ModelSpec]:
    """Specs of the built-in ``models`` and of the spec files, by model name."""
    specs = {name: get_spec(name) for name in models}
    for path in model_files:
        spec = load_spec_file(path)
        specs[spec.name] = spec
    return specs


def _edge_only_spec(spec: ModelSpec) -> ModelSpec:
    """The same edge layers followed by a single small linear layer (cheap to build)."""
    layers = (*spec.edge_layers, Flatten(), Linear(spec.num_classes))
    return ModelSpec(spec.name, spec.input, spec.num_classes, layers)


def _load_edge_weights(module: nn.Sequential, spec: ModelSpec, path: Path) -> None:
    keys = {k for k in module.state_dict() if int(k.split(".")[0]) < spec.n_edge}
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in keys:
            if key not in f.keys():  # noqa: SIM118 - safe_open has no __contains__
                raise InvalidSpec(f"weights file {path}: missing {key}")
            tensors[key] = f.get_tensor(key)
    own = module.state_dict()
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise InvalidSpec(f"weights file {path}: {key} has shape {list(value.shape)}, "
                              f"expected {list(own[key].shape)}")
    module.load_state_dict(tensors, strict=False)


def load_part(spec: ModelSpec, part: Part, weights_dir: Path | None, seed: int) -> Deployed:
    """Build one model's layers for a service: ``edge`` = ``module[:n_edge]``, ``cloud`` the rest."""
    path = None if weights_dir is None else weights_dir / f"{spec.name}.safetensors"
    if path is not None and not path.is_file():
        log.warning("no weights file %s: model %s uses seeded weights (seed %d)", path, spec.name, seed)
        path = None
    source = f"seed:{seed}" if path is None else str(path)
    if part == "edge":
        module = build_module(_edge_only_spec(spec), seed)[: spec.n_edge]
        assert isinstance(module, nn.Sequential)
        if path is not None:
            _load_edge_weights(module, spec, path)
    else:
        full = load_model(spec, path, seed)
        module = full[spec.n_edge :] if part == "cloud" else full
        assert isinstance(module, nn.Sequential)
    return Deployed(spec, module.eval(), source)


def load_deployed(specs: dict[str, ModelSpec], part: Part, weights_dir: Path | None,
                  seed: int) -> dict[str, Deployed]:
    """Load every deployed model (seconds for large ones: run it off the event loop).

    On one intra-op thread: copying weights in parallel would give this (pooled, long-lived) thread
    an OpenMP team of its own, and with more libgomp threads in the process than cores every team's
    idle threads stop spinning at once, which cost a 2-thread slice its second core after an idle
    gap (``services.common.serve``)."""
    torch.set_num_threads(1)
    return {name: load_part(spec, part, weights_dir, seed) for name, spec in specs.items()}


class ModelHost:
    """The deployed models of a service, loaded off the event loop at start-up.

    Shared by the executor (edge layers) and the cloud (whole models): readiness is "loaded", a
    failed load keeps the service live but not ready with the reason, and ``deployed`` maps an
    unknown model to 404 and a not-yet-loaded one to 503.
    """

    def __init__(self, role: str, name: str, specs: dict[str, ModelSpec], part: Part) -> None:
        self.role, self.name, self.specs, self.part = role, name, specs, part
        self.models: dict[str, Deployed] | None = None
        self.load_error: str | None = None

    def not_ready(self) -> str | None:
        if self.load_error is not None:
            return f"weights failed to load: {self.load_error}"
        return None if self.models is not None else "loading model weights"

    async def load_models(self, weights_dir: Path | None, seed: int) -> bool:
        """Load the weights in a thread; False (and the reason kept for readiness) on failure."""
        try:
            self.models = await asyncio.to_thread(load_deployed, self.specs, self.part, weights_dir, seed)
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            logging.getLogger(f"edgesplit.{self.role}").exception("%s %s: loading the models failed",
                                                                  self.role, self.name)
            return False
        return True

    def deployed(self, model: str) -> Deployed:
        if model not in self.specs:
            raise ModelNotFound(f"model {model!r} is not deployed on {self.role} {self.name}; "
                                f"deployed: {', '.join(self.specs)}")
        if self.models is None:
            raise Unavailable(f"{self.role} {self.name} is not ready: {self.not_ready()}")
        return self.models[model]
