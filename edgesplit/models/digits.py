"""The ``digits-cnn`` model on scikit-learn's bundled digits data set (8x8 grey images, 10 classes).

The shipped weights ``weights/digits-cnn.safetensors`` were made by ``edgesplit accuracy --retrain``
(seed 0, 30 epochs); ``train_digits_cnn`` reproduces them bit for bit on the same torch build.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from edgesplit.models.build import build_module, load_weights, save_weights
from edgesplit.models.zoo import get_spec

WEIGHTS = Path(__file__).with_name("weights") / "digits-cnn.safetensors"


class DigitsData(NamedTuple):
    """Train/test tensors: images (N, 1, 8, 8) scaled to [0, 1], labels (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_data(seed: int = 0, test_fraction: float = 0.25) -> DigitsData:
    """scikit-learn's digits, shuffled with ``seed`` and split into train and test."""
    data = load_digits()
    x = torch.from_numpy((data.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(data.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    n_test = int(len(y) * test_fraction)
    return DigitsData(x[n_test:], y[n_test:], x[:n_test], y[:n_test])


def train_digits_cnn(seed: int = 0, epochs: int = 30, data: DigitsData | None = None) -> nn.Sequential:
    """Train digits-cnn with Adam (lr 1e-3, batch 64), seeded; a few seconds on one core."""
    torch.manual_seed(seed)
    data = data or digits_data(seed)
    module = build_module(get_spec("digits-cnn"), seed).train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(module(data.x_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
    return module.eval()


def digits_model(retrain: bool = False, seed: int = 0) -> nn.Sequential:
    """The trained digits-cnn: the shipped weights, or a fresh training when asked or missing."""
    if retrain or not WEIGHTS.exists():
        module = train_digits_cnn(seed)
        WEIGHTS.parent.mkdir(exist_ok=True)
        save_weights(module, WEIGHTS)
        return module
    module = build_module(get_spec("digits-cnn"), seed)
    load_weights(module, WEIGHTS)
    return module.eval()
