"""Torch operators on a band of rows, shared by every slicing strategy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import AvgPool2d, Conv2d, MaxPool2d


def conv_of(module: nn.Sequential, index: int) -> nn.Conv2d:
    """Layer ``index`` of the module, which must be a conv."""
    conv = module[index]
    if not isinstance(conv, nn.Conv2d):
        raise InvalidPlan(f"layer {index} of the module is {type(conv).__name__}, expected Conv2d")
    return conv


def _pad_rows(x: torch.Tensor, top: int, bottom: int, value: float) -> torch.Tensor:
    if top == 0 and bottom == 0:
        return x
    return F.pad(x, (0, 0, top, bottom), value=value)


def apply_window(mod: nn.Module, layer: Conv2d | MaxPool2d | AvgPool2d, x: torch.Tensor, top: int,
                 bottom: int, weight: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """One window layer on a band of rows, with ``top``/``bottom`` rows of the layer's own padding.

    Rows are padded here (zeros for conv and avg-pool, -inf for max-pool); columns keep the layer's
    own padding. Avg-pool counts padded cells like torch's default ``count_include_pad=True``.
    """
    pw = layer.padding[1]
    # equal padding above and below, within the layer's own (a band against neither or both map
    # edges, e.g. a whole map): the operator pads itself, the same values without a padded copy
    native = top == bottom <= layer.padding[0]
    pad = (top, pw) if native else (0, pw)
    if not native:
        fill = float("-inf") if isinstance(layer, MaxPool2d) else 0.0
        x = _pad_rows(x, top, bottom, fill)
    if isinstance(layer, Conv2d):
        assert isinstance(mod, nn.Conv2d)
        w = mod.weight if weight is None else weight
        b = mod.bias if weight is None else bias
        return F.conv2d(x, w, b, layer.stride, pad, layer.dilation)
    if isinstance(layer, MaxPool2d):
        return F.max_pool2d(x, layer.kernel, layer.stride, pad, layer.dilation)
    return F.avg_pool2d(x, layer.kernel, layer.stride, pad, count_include_pad=True)
