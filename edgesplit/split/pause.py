"""Pause points between the layers of a slice, where a service may make low-priority work give way.

Every strategy's ``compute`` that runs layers one after another (``rows``, ``channels``) calls
:func:`pause_point` before each layer. It does nothing unless the calling thread installed a wait with
:func:`pause_with`: the executor's and the cloud's bulk threads install one that holds them while an
urgent slice computes in the same process (``services.common.compute.UrgentGate``), so that the urgent
slice gets the cores within one layer of a batch instead of sharing them for the whole batch. A pause
only delays; what is computed does not depend on it.

A fully connected layer can be one pause too long: alexnet-paper's first one reads 151 MB of weights,
15-22 ms for a batch of 8 on this machine, and an urgent call that comes meanwhile shares the memory
bandwidth with it until it ends. :func:`layer_forward` runs such a layer on a pausable thread in
chunks of output features with a pause point between two (same numbers: each output is the same dot
product; 15.2 vs 17.7 ms for the whole layer at batch 8 and 2 threads, cache-friendlier).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

_local = threading.local()
LINEAR_CHUNK = 1024  # output features of a fully connected layer between two pause points


def pause_with(wait: Callable[[], None] | None) -> None:
    """Make :func:`pause_point` call ``wait`` in the calling thread (None: nothing)."""
    _local.wait = wait


def pause_point() -> None:
    """Call the calling thread's wait, if it installed one (module docstring)."""
    wait = getattr(_local, "wait", None)
    if wait is not None:
        wait()


def pausable() -> bool:
    """Whether the calling thread installed a wait (a bulk thread of a service)."""
    return getattr(_local, "wait", None) is not None


def layer_forward(layer: nn.Module, x: torch.Tensor, chunk: int = LINEAR_CHUNK) -> torch.Tensor:
    """``layer(x)`` after a pause point; a ``Linear`` of more than ``chunk`` outputs with a batch of
    several rows, on a pausable thread, ``chunk`` outputs at a time with a pause point before each
    (module docstring). Urgent calls (one row, or no wait installed) run the layer whole."""
    pause_point()
    if not (isinstance(layer, nn.Linear) and layer.out_features > chunk and x.dim() == 2
            and x.shape[0] > 1 and pausable()):
        return layer(x)
    parts = []
    for at in range(0, layer.out_features, chunk):
        if at:
            pause_point()
        bias = None if layer.bias is None else layer.bias[at : at + chunk]
        parts.append(F.linear(x, layer.weight[at : at + chunk], bias))
    return torch.cat(parts, dim=1)
