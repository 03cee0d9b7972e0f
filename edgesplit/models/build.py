"""Torch modules from a model spec, seeded weights, and ``.safetensors`` weights I/O.

The module is an ``nn.Sequential`` whose index i is layer i of the spec, so state-dict keys are
``"{i}.weight"`` / ``"{i}.bias"`` and the edge part is ``module[:spec.n_edge]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edgesplit.errors import InvalidSpec
from edgesplit.models.spec import (
    AvgPool2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ModelSpec,
    ReLU,
)


def _torch_layer(layer: Layer, in_channels: int, in_features: int) -> nn.Module:
    if isinstance(layer, Conv2d):
        return nn.Conv2d(in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding,
                         layer.dilation, bias=layer.bias)
    if isinstance(layer, MaxPool2d):
        return nn.MaxPool2d(layer.kernel, layer.stride, layer.padding, layer.dilation)
    if isinstance(layer, AvgPool2d):
        return nn.AvgPool2d(layer.kernel, layer.stride, layer.padding)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, Flatten):
        return nn.Flatten()
    return nn.Linear(in_features, layer.out_features, bias=layer.bias)


def build_module(spec: ModelSpec, seed: int = 0) -> nn.Sequential:
    """The whole model as ``nn.Sequential`` in eval mode, with seeded weights (see ``init_weights``)."""
    shapes = spec.shapes()
    c_feat, h_feat, w_feat = shapes[-1]
    features = c_feat * h_feat * w_feat
    mods: list[nn.Module] = []
    for i, layer in enumerate(spec.layers):
        in_channels = shapes[i][0] if i < spec.n_edge else 0
        mods.append(_torch_layer(layer, in_channels, features))
        if isinstance(layer, Linear):
            features = layer.out_features
    module = nn.Sequential(*mods)
    init_weights(module, seed)
    return module.eval()


@torch.no_grad()
def init_weights(module: nn.Module, seed: int) -> None:
    """Kaiming-normal weights (fan-in, ReLU gain) and small uniform biases from one seeded generator.

    Keeps activations at a steady scale through deep stacks, unlike torch's default init, so that
    relative errors and top-1 agreement are meaningful on untrained models.
    """
    gen = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            fan_in = mod.weight[0].numel()
            std = math.sqrt(2.0 / fan_in)
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) * std)
            if mod.bias is not None:
                mod.bias.copy_((torch.rand(mod.bias.shape, generator=gen) - 0.5) * 0.2)


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write the module's parameters to a ``.safetensors`` file."""
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` file into the module; a missing or mismatched tensor raises InvalidSpec."""
    try:
        tensors = load_file(str(path))
    except FileNotFoundError as e:
        raise InvalidSpec(f"weights file {path} does not exist") from e
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise InvalidSpec(f"weights file {path}: missing {missing}, unexpected {extra}")
    for key, value in tensors.items():
        if value.shape != own[key].shape:
            raise InvalidSpec(
                f"weights file {path}: {key} has shape {list(value.shape)}, expected {list(own[key].shape)}"
            )
    module.load_state_dict(tensors)


def load_model(spec: ModelSpec, weights: str | Path | None = None, seed: int = 0) -> nn.Sequential:
    """Build the module and load weights from a file when given, else seeded weights."""
    module = build_module(spec, seed)
    if weights is not None:
        load_weights(module, weights)
    return module.eval()
