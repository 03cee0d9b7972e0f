"""Model specs, the built-in zoo, the torch builder and weights I/O."""

from edgesplit.models.spec import (
    AvgPool2d,
    Conv2d,
    Flatten,
    Layer,
    Linear,
    MaxPool2d,
    ModelSpec,
    ReLU,
    is_window,
    load_spec_file,
    spec_from_dict,
)
from edgesplit.models.zoo import BUILTINS, builtin_names, get_spec, resolve_spec

__all__ = [
    "BUILTINS",
    "AvgPool2d",
    "Conv2d",
    "Flatten",
    "Layer",
    "Linear",
    "MaxPool2d",
    "ModelSpec",
    "ReLU",
    "builtin_names",
    "get_spec",
    "is_window",
    "load_spec_file",
    "resolve_spec",
    "spec_from_dict",
]
