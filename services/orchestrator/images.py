"""Turn an uploaded body (PNG, JPEG or NPY) into the model's input tensor (1, C, H, W) float32.

Images (Pillow) are converted to the model's channels (``L`` for 1, ``RGB`` for 3), resized to its
H x W with bilinear filtering, scaled to [0, 1] and normalised per channel, ``(x - mean) / std``:

* 3 channels: the ImageNet statistics, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225);
* 1 channel: mean 0, std 1 (the [0, 1] scale ``digits-cnn`` was trained on; bright = ink).

An NPY body is taken as it is (no resizing or normalisation): it must hold exactly the model's input
shape, (C, H, W) or (1, C, H, W), of a real numeric dtype (cast to float32), with finite values.
The kind is recognised by the body's magic bytes, not by the declared content type.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgesplit import wire
from edgesplit.errors import EdgesplitError, InvalidInput
from edgesplit.models.spec import ModelSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them


class UnsupportedMedia(EdgesplitError):
    """The body is neither PNG, JPEG nor NPY (HTTP 415)."""

    status = 415


def sniff(body: bytes) -> str:
    """``"png"``, ``"jpeg"`` or ``"npy"`` from the magic bytes; UnsupportedMedia otherwise."""
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if body.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if body.startswith(wire.MAGIC):
        return "npy"
    raise UnsupportedMedia("body is not a PNG, JPEG or NPY file (checked its first bytes); send an image "
                           "or an .npy array of the model's input shape")


def normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel applied to images scaled to [0, 1]."""
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0,) * channels, (1.0,) * channels


def decode_image(body: bytes, spec: ModelSpec) -> np.ndarray:
    """A PNG/JPEG body as the model input (1, C, H, W) float32, resized and normalised (module doc)."""
    c, h, w = spec.input
    if c not in (1, 3):
        raise InvalidInput(f"model {spec.name} takes {c} channels: send an NPY array, images give 1 or 3")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(body))
            if opened.width * opened.height > MAX_PIXELS:
                raise InvalidInput(f"image of {opened.width}x{opened.height} pixels is too large "
                                   f"(at most {MAX_PIXELS} pixels)")
            img = opened.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:
        raise InvalidInput(f"cannot decode the image: {e}") from e
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if c == 1 else x.transpose(2, 0, 1)
    mean, std = normalisation(c)
    x = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    return np.ascontiguousarray(x[None], dtype=np.float32)


def decode_npy(body: bytes, spec: ModelSpec) -> np.ndarray:
    """An NPY body of shape (C, H, W) or (1, C, H, W) as float32 (1, C, H, W)."""
    arr = wire.decode(body, expect_dtype=None)
    if arr.dtype.kind not in "fiu" or arr.dtype.itemsize > 8:
        raise InvalidInput(f"array has dtype {arr.dtype}, expected a real number type such as float32")
    want = tuple(spec.input)
    if tuple(arr.shape) not in (want, (1, *want)):
        raise InvalidInput(f"array has shape {list(arr.shape)}, model {spec.name} expects "
                           f"{list(want)} or {[1, *want]}")
    x = np.ascontiguousarray(arr.reshape(1, *want), dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidInput("array has NaN or infinite values")
    return x


def to_input(body: bytes, spec: ModelSpec) -> np.ndarray:
    """Any accepted body (PNG, JPEG, NPY) as the model input (1, C, H, W) float32."""
    if not body:
        raise InvalidInput("empty body: send a PNG/JPEG image or an NPY array")
    kind = sniff(body)
    return decode_npy(body, spec) if kind == "npy" else decode_image(body, spec)
