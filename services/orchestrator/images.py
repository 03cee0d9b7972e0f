"""Turn an uploaded body (PNG, JPEG or NPY) into the model's input tensor (1, C, H, W) float32.

Images (Pillow) are converted to the model's channels (``L`` for 1, ``RGB`` for 3), resized to its
H x W with bilinear filtering, scaled to [0, 1] and normalised per channel, ``(x - mean) / std``:

* 3 channels: the ImageNet statistics, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225);
* 1 channel: mean 0, std 1 (the [0, 1] scale ``digits-cnn`` was trained on; bright = ink).

An NPY body is taken as it is (no resizing or normalisation): it must hold exactly the model's input
shape, (C, H, W) or (1, C, H, W), of a real numeric dtype (cast to float32), with finite values.
The kind is recognised by the body's magic bytes, not by the declared content type. An image may
declare at most :class:`ImageLimits` pixels per side (checked from its header, before decoding).
"""

from __future__ import annotations

import io
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin

from edgesplit import wire
from edgesplit.errors import EdgesplitError, InvalidInput
from edgesplit.models.spec import ModelSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# what sniff() lets through (MPO: a JPEG with extra pictures, as some cameras write; its first is read);
# Pillow may not guess any other format for these bytes
FORMATS = ("PNG", "JPEG", "MPO")
# PNG text and ICC chunks (tEXt, zTXt, iTXt, iCCP) inflate at most this much each, and all of them
# together at most TEXT_MEMORY: Pillow's defaults (1 MiB, 64 MiB) let a 4 KB upload inflate megabytes
PngImagePlugin.MAX_TEXT_CHUNK = TEXT_CHUNK = 64 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = TEXT_MEMORY = 256 * 1024
MAX_JPEG_SCANS = 64
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image is refused, never padded with grey


class ImageLimits(NamedTuple):
    """How large an image may say it is, checked from its header before any pixel is decoded.

    Each side may be at most ``max(scale * the model's side, min_side)`` pixels: the work of a decode
    is proportional to the pixels declared, so this bounds the CPU an upload can cost.
    """

    scale: int = 8
    min_side: int = 1024

    def max_size(self, spec: ModelSpec) -> tuple[int, int]:
        """(width, height) at most, for the model's input."""
        _, h, w = spec.input
        return max(self.scale * w, self.min_side), max(self.scale * h, self.min_side)


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


def _open(body: bytes, spec: ModelSpec, limits: ImageLimits) -> Image.Image:
    """The image with only its header read; refused when it declares more pixels than ``limits``, or
    (a JPEG) more than ``MAX_JPEG_SCANS`` scans."""
    opened = Image.open(io.BytesIO(body), formats=FORMATS)
    # every scan of a progressive JPEG passes over the whole image: thousands of tiny scans make a
    # small, in-size file cost minutes of CPU. Markers are the only 0xFF 0xDA in a JPEG (entropy-coded
    # 0xFF bytes are stuffed as 0xFF 0x00), so counting them is exact and costs one pass over the bytes.
    scans = body.count(b"\xff\xda") if opened.format in ("JPEG", "MPO") else 0
    if scans > MAX_JPEG_SCANS:
        raise InvalidInput(f"JPEG with {scans} scans is refused: at most {MAX_JPEG_SCANS} (a progressive "
                           "JPEG has about 10)")
    max_w, max_h = limits.max_size(spec)
    if opened.width > max_w or opened.height > max_h or opened.width < 1 or opened.height < 1:
        raise InvalidInput(f"image of {opened.width}x{opened.height} pixels is refused: model {spec.name} "
                           f"takes {spec.input[2]}x{spec.input[1]}, send at most {max_w}x{max_h}")
    return opened


def decode_image(body: bytes, spec: ModelSpec, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """A PNG/JPEG body as the model input (1, C, H, W) float32, resized and normalised (module doc).

    The declared size is checked before decoding (:class:`ImageLimits`); a JPEG is decoded at the
    smallest power-of-two reduction still at least the model's size (libjpeg's DCT scaling), so a
    large photo costs a fraction of a full decode. Any failure of the decoder is InvalidInput (422).
    """
    c, h, w = spec.input
    if c not in (1, 3):
        raise InvalidInput(f"model {spec.name} takes {c} channels: send an NPY array, images give 1 or 3")
    mode = "L" if c == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = _open(body, spec, limits)
            if opened.format in ("JPEG", "MPO"):
                opened.draft(mode, (w, h))
            img = opened.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
    except InvalidInput:
        raise
    # a third-party decoder on untrusted bytes: Pillow raises OSError, ValueError, SyntaxError,
    # EOFError, struct.error, DecompressionBomb* ... depending on the plugin and the damage; every one
    # of them means "this upload is not a decodable image", never a server fault
    except Exception as e:
        raise InvalidInput(f"cannot decode the image: {type(e).__name__}: {e}") from e
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if c == 1 else x.transpose(2, 0, 1)
    mean, std = normalisation(c)
    x = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    return np.ascontiguousarray(x[None], dtype=np.float32)


def decode_npy(body: bytes, spec: ModelSpec) -> np.ndarray:
    """An NPY body of shape (C, H, W) or (1, C, H, W) as float32 (1, C, H, W).

    The header is read and checked (dtype, shape against the model) before the data is looked at.
    """
    head = wire.read_header(body)
    if head.dtype.kind not in "fiu":
        raise InvalidInput(f"array has dtype {head.dtype}, expected a real number type such as float32")
    want = tuple(spec.input)
    if head.shape not in (want, (1, *want)):
        raise InvalidInput(f"array has shape {list(head.shape)}, model {spec.name} expects "
                           f"{list(want)} or {[1, *want]}")
    arr = wire.decode(body, expect_dtype=None)
    x = np.ascontiguousarray(arr.reshape(1, *want), dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidInput("array has NaN or infinite values")
    return x


def to_input(body: bytes, spec: ModelSpec, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Any accepted body (PNG, JPEG, NPY) as the model input (1, C, H, W) float32."""
    if not body:
        raise InvalidInput("empty body: send a PNG/JPEG image or an NPY array")
    kind = sniff(body)
    return decode_npy(body, spec) if kind == "npy" else decode_image(body, spec, limits)
