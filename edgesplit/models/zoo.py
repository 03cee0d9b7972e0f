"""Built-in model specs, shipped as JSON next to this module (DESIGN.md section 3)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from edgesplit.errors import ModelNotFound
from edgesplit.models.spec import ModelSpec, load_spec_file

_HERE = Path(__file__).parent
BUILTINS: tuple[str, ...] = ("alexnet-paper", "vgg16-paper", "alexnet", "vgg16", "digits-cnn")


@cache
def get_spec(name: str) -> ModelSpec:
    """The built-in spec called ``name``; raises ModelNotFound listing the known names."""
    if name not in BUILTINS:
        raise ModelNotFound(f"unknown model {name!r}; built-in models are {', '.join(BUILTINS)}")
    return load_spec_file(_HERE / f"{name}.json")


def builtin_names(names: list[str]) -> list[str]:
    """``names`` when every one is a built-in model; ValueError naming the others (what the services'
    and the testbed's settings validators raise)."""
    unknown = [m for m in names if m not in BUILTINS]
    if unknown:
        raise ValueError(f"unknown built-in model {unknown}; built-ins are {', '.join(BUILTINS)}")
    return names


def resolve_spec(name: str | None = None, model_file: str | Path | None = None) -> ModelSpec:
    """A spec from a file when given, otherwise the built-in of that name."""
    if model_file is not None:
        return load_spec_file(model_file)
    if name is None:
        raise ModelNotFound("give a model name or a model file")
    return get_spec(name)
