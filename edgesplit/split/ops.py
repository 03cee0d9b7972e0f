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


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d`` that always takes oneDNN's kernel for float32 CPU tensors outside autograd.

    For a single image with 3x3 (or 1x1) kernels and an input under 20480 values, torch picks its
    native im2col + GEMM kernel (``Slow2d``) over oneDNN, which suits a whole small layer but not the
    thin bands a split makes: one output row of alexnet-paper's last conv (input 384x3x7) took 1.68 ms
    that way against 0.58 ms through oneDNN, and a 192x3x15 band 0.75 against 0.43 ms; where torch
    already takes oneDNN the time is the same (docs/BENCHMARKS.md, "slice kernels"). Values agree to
    float rounding (a different summation order), as any split's do.
    """
    if (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled and not x.is_mkldnn):
        return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight.contiguous(), bias, list(padding),
                                                 list(stride), list(dilation), 1)
    return F.conv2d(x, weight, bias, stride, padding, dilation)


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
        return conv2d(x, w, b, layer.stride, pad, layer.dilation)
    if isinstance(layer, MaxPool2d):
        return F.max_pool2d(x, layer.kernel, layer.stride, pad, layer.dilation)
    return F.avg_pool2d(x, layer.kernel, layer.stride, pad, count_include_pad=True)
