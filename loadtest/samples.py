"""Sample images for the load test and the class each must be answered with.

The expected top-1 class of every sample is computed here, once, by the same model the stack serves
(the same spec, the same weights file or seed, through ``services.common.models.load_part``) on the
input the orchestrator decodes from the same bytes (``services.orchestrator.images.to_input``). The
locust process then needs no torch: it reads ``samples.json`` (written next to the images), which
holds for each sample its PNG path, the expected class and the decoded tensor for the KServe V2
``infer`` variant.

Images: for 1-channel models (``digits-cnn``) real digits from scikit-learn's bundled data set; for
3-channel models seeded random RGB images at the model's input size, kept only when the model's best
logit leads the second by a clear margin, so that an exact split (rounding ~1e-6) cannot flip it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from edgesplit.models.spec import ModelSpec

MIN_MARGIN = 1e-3  # best minus second logit, relative to the largest |logit| (at least 1)


def _digits_images(count: int, seed: int) -> list[np.ndarray]:
    """``count`` digits (8x8 uint8, bright = ink) drawn with ``seed`` from scikit-learn's data set."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    order = np.random.default_rng(seed).permutation(len(images))[: 4 * count]
    return [np.round(images[i] * 255.0 / 16.0).astype(np.uint8) for i in order]


def _random_images(spec: ModelSpec, count: int, seed: int) -> list[np.ndarray]:
    """``4 * count`` seeded RGB images (H, W, 3) uint8 at the model's input size: smooth blobs + noise."""
    _, h, w = spec.input
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(4 * count):
        freq, phase = rng.uniform(1, 6, size=(2, 3)), rng.uniform(0, 2 * np.pi, size=(2, 3))
        base = np.sin(freq[0] * 2 * np.pi * yy[..., None] + phase[0]) * np.cos(
            freq[1] * 2 * np.pi * xx[..., None] + phase[1])
        img = 127.5 + 90 * base + rng.normal(0, 25, size=(h, w, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _clear_top1(logits: torch.Tensor) -> int | None:
    """The top-1 class when it leads the runner-up by ``MIN_MARGIN`` (relative), else None."""
    top = torch.topk(logits, 2).values
    scale = max(1.0, float(logits.abs().max()))
    return int(logits.argmax()) if float(top[0] - top[1]) >= MIN_MARGIN * scale else None


def write_samples(model: str, out_dir: Path, count: int = 8, seed: int = 0,
                  weights_dir: Path | None = None, model_seed: int = 0) -> Path:
    """Write ``count`` PNG samples of ``model`` and ``samples.json`` to ``out_dir``; return its path.

    ``weights_dir`` and ``model_seed`` must be those the stack's services use (their
    ``weights_dir`` and ``seed`` settings) so that the expected classes are the stack's answers.
    """
    from edgesplit.models import get_spec
    from services.common.models import load_part
    from services.orchestrator.images import to_input

    spec = get_spec(model)
    module = load_part(spec, "all", weights_dir, model_seed).module
    candidates = _digits_images(count, seed) if spec.input[0] == 1 else _random_images(spec, count, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples: list[dict[str, Any]] = []
    for image in candidates:
        body = _png(image)
        x = to_input(body, spec)
        with torch.no_grad():
            top1 = _clear_top1(module(torch.from_numpy(x))[0])
        if top1 is None:
            continue
        path = out_dir / f"{model}-{len(samples)}.png"
        path.write_bytes(body)
        samples.append({"image": str(path.resolve()), "top1": top1, "shape": list(x.shape),
                        "data": [float(v) for v in x.ravel()]})
        if len(samples) == count:
            break
    if not samples:
        raise RuntimeError(f"no sample of {model} has a clear top-1 class; try another seed")
    meta = {"model": model, "seed": seed, "model_seed": model_seed,
            "weights": None if weights_dir is None else str(weights_dir), "samples": samples}
    target = out_dir / "samples.json"
    target.write_text(json.dumps(meta))
    return target
