"""Fuzz targets of every decoder that reads untrusted bytes (hypothesis, bounded budgets).

The property is the same for each: on any input the decoder either returns what it promises or raises
the domain error that becomes a 4xx (``InvalidInput``, ``InvalidPlan``, ``UnsupportedMedia``); no other
exception (which would be a 500), no hang. Inputs are built from valid bodies, mutated, and from the
grammar's own alphabet, so the fuzzer reaches past the first check.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgesplit import wire
from edgesplit.errors import InvalidInput, InvalidPlan
from edgesplit.models import get_spec
from services.orchestrator.images import ImageLimits, UnsupportedMedia, to_input

ALEX = get_spec("alexnet-paper")  # 3 x 32 x 32
DIGITS = get_spec("digits-cnn")  # 1 x 8 x 8
BUDGET = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# pieces a header dict is made of, and some it must not contain
_TOKENS = ["{", "}", "(", ")", ",", " ", ":", "'descr'", "'fortran_order'", "'shape'", '"shape"', "True",
           "False", "'<f4'", "'>f8'", "'|u1'", "'<c8'", "'|O'", "'V0'", "('<f4', -1)", "0", "1", "3", "32",
           "-1", "2147483648", "9223372036854775807", "[", "]", "__import__('os')", "\n", "'", '"', "1e3",
           "٣", "None", "{'a': 1}"]


def _npy(header: str, data: bytes = b"") -> bytes:
    raw = header.encode("utf-8", "replace")[:4000]
    return wire.MAGIC + b"\x01\x00" + struct.pack("<H", len(raw)) + raw + data


def _mutate(body: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(body)
    for at, value in flips:
        if out:
            out[at % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


def _decode_ok_or_invalid(body: bytes) -> None:
    try:
        arr = wire.decode(body, expect_dtype=None)
    except InvalidInput:
        return
    assert isinstance(arr, np.ndarray) and arr.ndim <= wire.MAX_NDIM


@BUDGET
@given(tokens=st.lists(st.sampled_from(_TOKENS), max_size=40), data=st.binary(max_size=64))
def test_npy_header_grammar_fuzz(tokens: list[str], data: bytes) -> None:
    _decode_ok_or_invalid(_npy("".join(tokens), data))


@BUDGET
@given(shape=st.lists(st.integers(0, 5), max_size=4), dtype=st.sampled_from(["<f4", "<f8", "|u1", "<i8"]),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
       cut=st.none() | st.integers(0, 300))
def test_npy_mutated_bodies_fuzz(shape: list[int], dtype: str, flips: list[tuple[int, int]],
                                 cut: int | None) -> None:
    body = wire.encode(np.zeros(shape, dtype))
    _decode_ok_or_invalid(_mutate(body, flips, cut))


@BUDGET
@given(body=st.binary(max_size=300))
def test_npy_random_bytes_after_the_magic_fuzz(body: bytes) -> None:
    _decode_ok_or_invalid(wire.MAGIC + body)


def _image(kind: str, w: int, h: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=kind, **({"progressive": True} if seed % 2 else {}))
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _to_input_ok_or_refused(body: bytes, spec: object) -> None:
    try:
        x = to_input(body, spec, ImageLimits())  # type: ignore[arg-type]
    except (InvalidInput, UnsupportedMedia):
        return
    c, h, w = spec.input  # type: ignore[attr-defined]
    assert x.shape == (1, c, h, w) and x.dtype == np.float32


@BUDGET
@given(kind=st.sampled_from(["PNG", "JPEG"]), w=st.integers(1, 40), h=st.integers(1, 40),
       seed=st.integers(0, 1000), flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)),
                                                 max_size=6),
       cut=st.none() | st.integers(0, 600), grey=st.booleans())
def test_image_mutated_bodies_fuzz(kind: str, w: int, h: int, seed: int, flips: list[tuple[int, int]],
                                   cut: int | None, grey: bool) -> None:
    body = _image(kind, w, h, seed)
    keep = 2 if kind == "JPEG" else 8  # keep the magic so the image decoder, not sniff(), is fuzzed
    mutated = body[:keep] + _mutate(body[keep:], flips, cut)
    _to_input_ok_or_refused(mutated, DIGITS if grey else ALEX)


@BUDGET
@given(chunks=st.lists(st.tuples(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"iCCP", b"IHDR", b"IDAT",
                                                  b"acTL", b"fcTL", b"PLTE", b"gAMA"]),
                                 st.binary(max_size=40) | st.builds(lambda n: b"k\x00\x00" + zlib.compress(
                                     b"\x00" * n), st.integers(0, 2_000_000))), max_size=4),
       w=st.integers(1, 1 << 20), h=st.integers(1, 1 << 20))
def test_png_chunk_and_declared_size_fuzz(chunks: list[tuple[bytes, bytes]], w: int, h: int) -> None:
    """PNG bodies of chosen chunks, inflating text chunks (up to 2 MB) and absurd declared sizes."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    body = b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(_chunk(k, d) for k, d in chunks)
    body += _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")
    _to_input_ok_or_refused(body, ALEX)


@BUDGET
@given(params=st.dictionaries(st.sampled_from(list(wire.SLICE_PARAMS)),
                              st.text(alphabet="0123456789,-+ ٣e_abc", max_size=12), max_size=9))
def test_slice_params_fuzz(params: dict[str, str]) -> None:
    with contextlib.suppress(InvalidInput, InvalidPlan):
        wire.slice_from_params(params, ALEX)
