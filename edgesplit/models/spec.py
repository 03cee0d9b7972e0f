"""Model specs: the layer list of a CNN, its shapes and FLOPs, parsed from JSON (DESIGN.md section 3).

A spec is pure data (no torch). Layers before ``flatten`` run on the edge, the rest in the cloud.
Shapes are (C, H, W). FLOPs count a multiply-add as 2 FLOPs, as the paper does (its AlexNet convs
total 2.99 GFLOP).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import jsonschema

from edgesplit.errors import InvalidSpec, read_user_text

Pair = tuple[int, int]
Shape = tuple[int, int, int]

_SCHEMA_PATH = Path(__file__).with_name("schema") / "model.schema.json"


def _pair(value: int | Sequence[int], what: str) -> Pair:
    if isinstance(value, int):
        return (value, value)
    if len(value) != 2:
        raise InvalidSpec(f"{what} must be an int or [h, w], got {list(value)}")
    return (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class Conv2d:
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    bias: bool = True
    type: Literal["conv2d"] = "conv2d"

    def span(self) -> Pair:
        """Receptive extent of the kernel in input cells, (h, w): d*(k-1)+1."""
        return (
            self.dilation[0] * (self.kernel[0] - 1) + 1,
            self.dilation[1] * (self.kernel[1] - 1) + 1,
        )


@dataclass(frozen=True)
class MaxPool2d:
    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    type: Literal["maxpool2d"] = "maxpool2d"

    def span(self) -> Pair:
        return (
            self.dilation[0] * (self.kernel[0] - 1) + 1,
            self.dilation[1] * (self.kernel[1] - 1) + 1,
        )


@dataclass(frozen=True)
class AvgPool2d:
    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    type: Literal["avgpool2d"] = "avgpool2d"
    dilation: Pair = field(default=(1, 1), init=False)

    def span(self) -> Pair:
        return self.kernel


@dataclass(frozen=True)
class ReLU:
    type: Literal["relu"] = "relu"


@dataclass(frozen=True)
class Flatten:
    type: Literal["flatten"] = "flatten"


@dataclass(frozen=True)
class Linear:
    out_features: int
    bias: bool = True
    in_features: int | None = None
    type: Literal["linear"] = "linear"


Layer = Conv2d | MaxPool2d | AvgPool2d | ReLU | Flatten | Linear
WindowLayer = Conv2d | MaxPool2d | AvgPool2d


def is_window(layer: Layer) -> bool:
    """True for layers with a sliding window along H (conv and pools): they need a halo."""
    return isinstance(layer, Conv2d | MaxPool2d | AvgPool2d)


def window_out(size: int, span: int, stride: int, padding: int) -> int:
    """Output length of a sliding window: floor((size + 2p - span) / s) + 1."""
    return (size + 2 * padding - span) // stride + 1


@dataclass(frozen=True)
class ModelSpec:
    """A CNN: input shape (C, H, W), classes and layers. Validated on construction."""

    name: str
    input: Shape
    num_classes: int
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def n_edge(self) -> int:
        """Number of edge layers: those before ``flatten``."""
        return next(i for i, layer in enumerate(self.layers) if isinstance(layer, Flatten))

    @property
    def edge_layers(self) -> tuple[Layer, ...]:
        return self.layers[: self.n_edge]

    @property
    def cloud_layers(self) -> tuple[Layer, ...]:
        return self.layers[self.n_edge :]

    def shapes(self) -> list[Shape]:
        """Map shape before each edge layer and after the last: len = n_edge + 1."""
        return list(self._shapes)

    @cached_property
    def _shapes(self) -> tuple[Shape, ...]:
        # specs are immutable, and planners ask for shapes in their inner loops
        return tuple(_edge_shapes(self.input, self.edge_layers))

    @property
    def feature_shape(self) -> Shape:
        """Shape of the map sent to the cloud."""
        return self.shapes()[-1]

    def conv_indices(self) -> list[int]:
        """Indices (into layers) of the edge convolutions."""
        return [i for i, layer in enumerate(self.edge_layers) if isinstance(layer, Conv2d)]

    def layer_flops(self) -> list[float]:
        """FLOPs of every layer (edge then cloud), a multiply-add = 2 FLOPs."""
        shapes = self.shapes()
        out = [_layer_flops(layer, shapes[i], shapes[i + 1]) for i, layer in enumerate(self.edge_layers)]
        fin = shapes[-1][0] * shapes[-1][1] * shapes[-1][2]
        for layer in self.cloud_layers:
            if isinstance(layer, Linear):
                out.append(2.0 * fin * layer.out_features)
                fin = layer.out_features
            else:
                out.append(0.0)
        return out

    def edge_flops(self) -> float:
        return sum(self.layer_flops()[: self.n_edge])

    def cloud_flops(self) -> float:
        return sum(self.layer_flops()[self.n_edge :])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input": list(self.input),
            "num_classes": self.num_classes,
            "layers": [_layer_to_dict(layer) for layer in self.layers],
        }


def _layer_flops(layer: Layer, shape_in: Shape, shape_out: Shape) -> float:
    c_out, h_out, w_out = shape_out
    if isinstance(layer, Conv2d):
        macs = c_out * h_out * w_out * shape_in[0] * layer.kernel[0] * layer.kernel[1]
        return 2.0 * macs + (c_out * h_out * w_out if layer.bias else 0)
    if isinstance(layer, MaxPool2d | AvgPool2d):
        return float(c_out * h_out * w_out * layer.kernel[0] * layer.kernel[1])
    if isinstance(layer, ReLU):
        return float(c_out * h_out * w_out)
    return 0.0


def _edge_shapes(shape: Shape, layers: Sequence[Layer]) -> list[Shape]:
    shapes = [shape]
    for i, layer in enumerate(layers):
        shape = _next_shape(shape, layer, i)
        shapes.append(shape)
    return shapes


def _next_shape(shape: Shape, layer: Layer, index: int) -> Shape:
    c, h, w = shape
    if isinstance(layer, ReLU):
        return shape
    if not isinstance(layer, Conv2d | MaxPool2d | AvgPool2d):
        raise InvalidSpec(f"layer {index} ({layer.type}) cannot come before flatten")
    span_h, span_w = layer.span()
    ph, pw = layer.padding
    if span_h > h + 2 * ph or span_w > w + 2 * pw:
        raise InvalidSpec(
            f"layer {index} ({layer.type}): kernel extent {span_h}x{span_w} is larger than its padded "
            f"input {h + 2 * ph}x{w + 2 * pw}"
        )
    if not isinstance(layer, Conv2d) and (2 * ph > layer.kernel[0] or 2 * pw > layer.kernel[1]):
        raise InvalidSpec(f"layer {index} ({layer.type}): padding must be at most half the kernel")
    h_out = window_out(h, span_h, layer.stride[0], ph)
    w_out = window_out(w, span_w, layer.stride[1], pw)
    return (layer.out_channels if isinstance(layer, Conv2d) else c, h_out, w_out)


def _validate(spec: ModelSpec) -> None:
    if not spec.layers:
        raise InvalidSpec(f"model {spec.name}: no layers")
    flattens = [i for i, layer in enumerate(spec.layers) if isinstance(layer, Flatten)]
    if len(flattens) != 1:
        raise InvalidSpec(f"model {spec.name}: expected exactly one flatten layer, found {len(flattens)}")
    if min(spec.input) < 1:
        raise InvalidSpec(f"model {spec.name}: input shape {list(spec.input)} must be positive")
    shapes = spec.shapes()
    fin = shapes[-1][0] * shapes[-1][1] * shapes[-1][2]
    last_out = fin
    linears = [layer for layer in spec.cloud_layers if isinstance(layer, Linear)]
    for layer in spec.cloud_layers:
        if isinstance(layer, Conv2d | MaxPool2d | AvgPool2d):
            raise InvalidSpec(f"model {spec.name}: {layer.type} after flatten is not supported")
    for layer in linears:
        if layer.in_features is not None and layer.in_features != last_out:
            raise InvalidSpec(
                f"model {spec.name}: flatten gives {last_out} features but the linear layer expects "
                f"in_features={layer.in_features}"
            )
        last_out = layer.out_features
    if last_out != spec.num_classes:
        raise InvalidSpec(f"model {spec.name}: the last layer gives {last_out} outputs, num_classes is "
                          f"{spec.num_classes}")


def _layer_to_dict(layer: Layer) -> dict[str, Any]:
    if isinstance(layer, Conv2d):
        return {"type": "conv2d", "out_channels": layer.out_channels, "kernel": list(layer.kernel),
                "stride": list(layer.stride), "padding": list(layer.padding),
                "dilation": list(layer.dilation), "bias": layer.bias}
    if isinstance(layer, MaxPool2d):
        return {"type": "maxpool2d", "kernel": list(layer.kernel), "stride": list(layer.stride),
                "padding": list(layer.padding), "dilation": list(layer.dilation)}
    if isinstance(layer, AvgPool2d):
        return {"type": "avgpool2d", "kernel": list(layer.kernel), "stride": list(layer.stride),
                "padding": list(layer.padding)}
    if isinstance(layer, Linear):
        d: dict[str, Any] = {"type": "linear", "out_features": layer.out_features, "bias": layer.bias}
        if layer.in_features is not None:
            d["in_features"] = layer.in_features
        return d
    return {"type": layer.type}


def _parse_layer(raw: Mapping[str, Any], index: int) -> Layer:
    kind = raw.get("type")
    try:
        if kind == "conv2d":
            return Conv2d(
                out_channels=int(raw["out_channels"]),
                kernel=_pair(raw["kernel"], f"layer {index} kernel"),
                stride=_pair(raw.get("stride", 1), f"layer {index} stride"),
                padding=_pair(raw.get("padding", 0), f"layer {index} padding"),
                dilation=_pair(raw.get("dilation", 1), f"layer {index} dilation"),
                bias=bool(raw.get("bias", True)),
            )
        if kind in ("maxpool2d", "avgpool2d"):
            kernel = _pair(raw["kernel"], f"layer {index} kernel")
            stride = _pair(raw.get("stride", raw["kernel"]), f"layer {index} stride")
            padding = _pair(raw.get("padding", 0), f"layer {index} padding")
            if kind == "maxpool2d":
                return MaxPool2d(kernel, stride, padding, _pair(raw.get("dilation", 1), "dilation"))
            return AvgPool2d(kernel, stride, padding)
        if kind == "relu":
            return ReLU()
        if kind == "flatten":
            return Flatten()
        if kind == "linear":
            fin = raw.get("in_features")
            return Linear(int(raw["out_features"]), bool(raw.get("bias", True)),
                          None if fin is None else int(fin))
    except KeyError as e:
        raise InvalidSpec(f"layer {index} ({kind}): missing field {e.args[0]!r}") from e
    raise InvalidSpec(
        f"layer {index}: unknown layer type {kind!r}; expected one of conv2d, relu, maxpool2d, "
        "avgpool2d, flatten, linear"
    )


def spec_from_dict(raw: Mapping[str, Any]) -> ModelSpec:
    """Parse and validate a model spec dict (JSON schema first, then shapes)."""
    schema = json.loads(_SCHEMA_PATH.read_text())
    try:
        jsonschema.validate(dict(raw), schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        raise InvalidSpec(f"{where}: {e.message}") from e
    layers = tuple(_parse_layer(layer, i) for i, layer in enumerate(raw["layers"]))
    c, h, w = raw["input"]
    return ModelSpec(str(raw["name"]), (int(c), int(h), int(w)), int(raw["num_classes"]), layers)


def load_spec_file(path: str | Path) -> ModelSpec:
    """Load a model spec from a JSON file; raises InvalidSpec (one line) with the file name when it
    cannot be read as text (``edgesplit.errors.read_user_text``) or is not a valid spec."""
    p = Path(path)
    try:
        raw = json.loads(read_user_text(p, "model file", "JSON", InvalidSpec))
    except json.JSONDecodeError as e:
        raise InvalidSpec(f"model file {p} is not valid JSON: {e}") from e
    return spec_from_dict(raw)
