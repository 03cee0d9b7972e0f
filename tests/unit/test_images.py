"""Decoding uploads (PNG, JPEG, NPY) into the model input tensor."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgesplit import wire
from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from services.orchestrator.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageLimits,
    UnsupportedMedia,
    sniff,
    to_input,
)

ALEX = get_spec("alexnet-paper")  # 3 x 32 x 32
DIGITS = get_spec("digits-cnn")  # 1 x 8 x 8


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_png_is_resized_and_normalised_with_imagenet_statistics() -> None:
    img = np.zeros((64, 48, 3), np.uint8)
    img[..., 0] = 255  # pure red
    x = to_input(_png(img), ALEX)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    want = [(1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], -IMAGENET_MEAN[1] / IMAGENET_STD[1],
            -IMAGENET_MEAN[2] / IMAGENET_STD[2]]
    np.testing.assert_allclose(x[0, :, 5, 7], want, rtol=1e-6)


def test_grey_image_for_a_one_channel_model_scales_to_unit_range() -> None:
    img = np.full((16, 16), 255, np.uint8)
    img[:8] = 0
    x = to_input(_png(img), DIGITS)
    assert x.shape == (1, 1, 8, 8)
    assert x[0, 0, 0, 0] == 0.0 and x[0, 0, 7, 0] == 1.0


def test_rgb_image_is_converted_to_grey_for_a_one_channel_model() -> None:
    x = to_input(_png(np.full((8, 8, 3), 128, np.uint8), "JPEG"), DIGITS)
    assert x.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(x, 128 / 255, atol=0.02)


def test_npy_of_the_input_shape_is_taken_as_is() -> None:
    arr = np.random.default_rng(0).standard_normal((3, 32, 32))  # float64: cast to float32
    x = to_input(wire.encode(arr), ALEX)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], arr.astype(np.float32))
    assert to_input(wire.encode(arr[None].astype(np.float32)), ALEX).shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("arr", "message"), [
    (np.zeros((3, 31, 32), np.float32), "expects [3, 32, 32]"),
    (np.zeros((2, 3, 32, 32), np.float32), "expects [3, 32, 32]"),
    (np.zeros((3, 32, 32), np.complex64), "real number"),
    (np.full((3, 32, 32), np.nan, np.float32), "NaN"),
])
def test_bad_npy_is_refused_with_the_reason(arr: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_input(wire.encode(arr), ALEX)


def test_not_an_image_is_unsupported_media() -> None:
    with pytest.raises(UnsupportedMedia) as err:
        to_input(b"hello, this is text", ALEX)
    assert err.value.status == 415
    with pytest.raises(InvalidInput):
        to_input(b"", ALEX)


def test_truncated_png_is_invalid_input() -> None:
    body = _png(np.zeros((20, 20, 3), np.uint8))
    assert sniff(body) == "png"
    with pytest.raises(InvalidInput, match="cannot decode"):
        to_input(body[:30], ALEX)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header (SOF) claims width x height: a decompression bomb."""
    body = bytearray(_png(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    sof = body.index(b"\xff\xc0")
    body[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(body)


def _png_with_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    body = _png(np.zeros((4, 4, 3), np.uint8))
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return body[:33] + chunk + body[33:]  # after the IHDR chunk


def test_declared_size_above_the_limit_is_refused_before_decoding() -> None:
    bomb = _jpeg_declaring(6000, 6000)
    assert len(bomb) < 1000
    with pytest.raises(InvalidInput, match=r"6000x6000 pixels is refused.*at most 1024x1024"):
        to_input(bomb, ALEX)
    limits = ImageLimits(scale=8, min_side=16)
    with pytest.raises(InvalidInput, match="at most 256x256"):
        to_input(_png(np.zeros((300, 10, 3), np.uint8)), ALEX, limits)
    assert to_input(_png(np.zeros((256, 256, 3), np.uint8)), ALEX, limits).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP"])
def test_png_text_and_icc_chunks_that_inflate_to_megabytes_are_refused(kind: bytes) -> None:
    import zlib

    body = _png_with_chunk(kind, b"key\x00\x00" + zlib.compress(b"\x00" * (4 << 20)))
    assert len(body) < 10_000
    with pytest.raises(InvalidInput, match="cannot decode the image"):
        to_input(body, ALEX)


def test_large_jpeg_decodes_at_a_reduced_scale_to_the_same_input() -> None:
    img = np.zeros((512, 512, 3), np.uint8)
    img[:256] = 255
    x = to_input(_png(img, "JPEG"), ALEX)
    assert x.shape == (1, 3, 32, 32)
    assert x[0, 0, 0, 0] > x[0, 0, 31, 0]  # top half white, bottom black


def test_jpeg_with_thousands_of_scans_is_refused_before_decoding() -> None:
    """A scan bomb: every scan of a progressive JPEG passes over the whole image."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(buf, format="JPEG", progressive=True)
    body = buf.getvalue()
    assert to_input(body, ALEX).shape == (1, 3, 32, 32)  # an ordinary progressive JPEG is fine
    sos = body.index(b"\xff\xda")
    bomb = body[:sos] + body[sos:-2] * 100 + body[-2:]  # its scans repeated: ~700 scans
    with pytest.raises(InvalidInput, match=r"scans is refused: at most 64"):
        to_input(bomb, ALEX)
