"""The models a service deploys: their specs and torch modules, loaded once at start-up.

Weights come from ``<weights_dir>/<model>.safetensors`` when that file exists, else from the seed,
so that every process (executors, cloud, orchestrator) builds the same weights for the same model.
The executor keeps only the edge layers (``part="edge"``): it never builds the fully connected ones,
whose seeded weights are drawn after the convs' and so do not change them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from torch import nn

from edgesplit.errors import InvalidSpec
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
    """Load every deployed model (seconds for large ones: run it off the event loop)."""
    return {name: load_part(spec, part, weights_dir, seed) for name, spec in specs.items()}
