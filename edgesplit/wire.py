"""The wire format between services (DESIGN.md section 3): NPY v1 bodies and slice metadata.

A body is a standard ``.npy`` file (format version 1.0, what ``np.save`` writes): magic
``\\x93NUMPY``, version ``1 0``, a little-endian uint16 header length, a Python-literal header dict
(``descr``, ``fortran_order``, ``shape``) padded with spaces to a multiple of 64 bytes and ended by a
newline, then the C-order data. :func:`decode` parses the header itself and returns ``np.frombuffer``
over the rest of the body: no copy (a ``bytearray`` body gives a writable array, ``bytes`` a read-only
one).

Slice metadata travels in the query string (:func:`slice_to_params` / :func:`slice_from_params`);
ranges are written ``"a,b"`` (half-open ``[a, b)``). The receiving side rebuilds the canonical slice
from the strategy, the layer range and the unit range, and refuses metadata that disagrees with it.
"""

from __future__ import annotations

import ast
import math
import re
import struct
from collections.abc import Mapping, Sequence

import numpy as np

from edgesplit.errors import InvalidInput
from edgesplit.models.spec import ModelSpec
from edgesplit.split import STRATEGIES, Slice, Strategy, check_group, make_slices, part_total

MAGIC = b"\x93NUMPY"
CONTENT_TYPE = "application/x-npy"
_ALIGN = 64
_MAX_HEADER = 4096  # a 4-d shape needs < 100 bytes; refuse absurd headers before parsing them

ShapePattern = Sequence[int | None]
# the header np.save and encode() write; anything else goes through ast.literal_eval
_CANONICAL = re.compile(r"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), "
                        r"'shape': \(((?:\d+, )*\d*|(?:\d+, )*\d+,?)\), \} *\n")


def encode(array: np.ndarray) -> bytes:
    """Serialise an array as NPY v1, C order, little-endian (``np.load`` reads it back). One copy."""
    arr = np.asarray(array)
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    shape = tuple(int(d) for d in arr.shape)
    text = f"{{'descr': '{arr.dtype.str}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = _ALIGN - (len(MAGIC) + 4 + len(text) + 1) % _ALIGN  # data starts 64-byte aligned, as np.save
    header = (text + " " * pad + "\n").encode("latin1")
    return b"".join((MAGIC, b"\x01\x00", struct.pack("<H", len(header)), header, arr.data))


def _parse_header(body: bytes | bytearray | memoryview) -> tuple[dict[str, object], int]:
    """The header dict and the offset of the data. Raises InvalidInput on a malformed header."""
    if len(body) < 10 or bytes(body[:6]) != MAGIC:
        raise InvalidInput("body is not an NPY array: expected the magic bytes \\x93NUMPY at its start")
    major, minor = body[6], body[7]
    if (major, minor) != (1, 0):
        raise InvalidInput(f"NPY format version {major}.{minor} is not supported; expected 1.0")
    (hlen,) = struct.unpack("<H", bytes(body[8:10]))
    if hlen > _MAX_HEADER:
        raise InvalidInput(f"NPY header of {hlen} bytes is too long; expected at most {_MAX_HEADER}")
    if len(body) < 10 + hlen:
        raise InvalidInput(f"truncated NPY body: header needs {10 + hlen} bytes, body has {len(body)}")
    text = bytes(body[10 : 10 + hlen]).decode("latin1")
    fast = _CANONICAL.fullmatch(text)
    if fast is not None:  # what np.save and encode() write: no need for the literal parser
        descr, order, dims = fast.groups()
        shape = tuple(int(d) for d in dims.replace(" ", "").split(",") if d)
        return {"descr": descr, "fortran_order": order == "True", "shape": shape}, 10 + hlen
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise InvalidInput(f"NPY header is not a Python literal dict: {e}") from e
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise InvalidInput("NPY header must be a dict with exactly the keys descr, fortran_order, shape")
    return header, 10 + hlen


def _header_shape(header: Mapping[str, object]) -> tuple[int, ...]:
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(f"NPY shape {shape!r} must be a tuple of non-negative integers")
    return shape


def _check_shape(shape: tuple[int, ...], expect: ShapePattern) -> None:
    ok = len(shape) == len(expect) and all(e is None or e == d for d, e in zip(shape, expect, strict=False))
    if not ok:
        want = "[" + ", ".join("N" if e is None else str(e) for e in expect) + "]"
        raise InvalidInput(f"array has shape {list(shape)}, expected {want}")


def decode(body: bytes | bytearray | memoryview, expect_dtype: np.dtype | type | str | None = np.float32,
           expect_shape: ShapePattern | None = None) -> np.ndarray:
    """Parse an NPY v1 body without copying its data.

    ``expect_dtype`` (default float32, little-endian; ``None`` accepts any) and ``expect_shape``
    (``None`` entries match any size) are checked; so are the magic bytes, the version, C order and
    the data length. Every failure raises InvalidInput saying what was expected.
    """
    header, offset = _parse_header(body)
    try:
        dtype = np.dtype(header["descr"])  # type: ignore[call-overload]
    except TypeError as e:
        raise InvalidInput(f"NPY descr {header['descr']!r} is not a numpy dtype") from e
    if dtype.hasobject:
        raise InvalidInput("NPY arrays of Python objects are refused")
    if expect_dtype is not None:
        want = np.dtype(expect_dtype).newbyteorder("<")
        if dtype != want:
            raise InvalidInput(f"array has dtype {dtype.str} ({dtype}), expected {want.str} ({want})")
    if header["fortran_order"] is not False:
        raise InvalidInput("array is in Fortran order, expected C order (fortran_order: False)")
    shape = _header_shape(header)
    if expect_shape is not None:
        _check_shape(shape, expect_shape)
    need = math.prod(shape) * dtype.itemsize
    have = len(body) - offset
    if have != need:
        what = "truncated NPY body" if have < need else "NPY body has trailing bytes"
        raise InvalidInput(f"{what}: shape {list(shape)} of {dtype} needs {need} data bytes, got {have}")
    return np.frombuffer(body, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)


# --- slice metadata ---------------------------------------------------------------------------------

_RANGES = ("in_rows", "pad", "out_rows", "kernel_rows", "channels", "in_channels")
_UNIT_FIELD: dict[str, str] = {"rows": "out_rows", "kernel-rows": "kernel_rows", "channels": "channels"}


def _fmt(pair: tuple[int, int]) -> str:
    return f"{pair[0]},{pair[1]}"


def slice_to_params(sl: Slice) -> dict[str, str]:
    """Query parameters describing ``sl`` (ranges as ``"a,b"``; absent optional ranges omitted)."""
    params = {"strategy": sl.strategy, "start": str(sl.start), "stop": str(sl.stop)}
    for name in _RANGES:
        value = getattr(sl, name)
        if value is not None:
            params[name] = _fmt(value)
    return params


def _int(params: Mapping[str, str], name: str) -> int:
    raw = params.get(name)
    if raw is None:
        raise InvalidInput(f"missing slice parameter {name!r}")
    try:
        return int(raw)
    except ValueError as e:
        raise InvalidInput(f"slice parameter {name}={raw!r} must be an integer") from e


def _pair(params: Mapping[str, str], name: str) -> tuple[int, int] | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        a, b = (int(v) for v in raw.split(","))
    except ValueError as e:
        raise InvalidInput(f"slice parameter {name}={raw!r} must be two integers 'a,b'") from e
    return (a, b)


def canonical_slice(spec: ModelSpec, strategy: Strategy, start: int, stop: int,
                    units: tuple[int, int]) -> Slice:
    """The slice computing units ``[a, b)`` (rows, kernel rows or channels) of group ``[start, stop)``.

    Raises InvalidPlan (422) for a bad group, InvalidInput (422) for units outside the group.
    """
    check_group(spec, start, stop, strategy)
    total = part_total(spec, start, stop, strategy)
    a, b = units
    if not 0 <= a <= b <= total:
        what = _UNIT_FIELD[strategy].replace("_", " ")
        raise InvalidInput(f"{what} [{a}, {b}) out of range: layers [{start}, {stop}) of model {spec.name} "
                           f"have {total} ({what} [0, {total}))")
    return make_slices(spec, start, stop, strategy, [a, b - a, total - b])[1]


SLICE_PARAMS: tuple[str, ...] = ("strategy", "start", "stop", *_RANGES)


def slice_from_params(params: Mapping[str, str], spec: ModelSpec) -> Slice:
    """The validated slice described by query parameters, for ``spec``.

    ``strategy``, ``start``, ``stop`` and the unit range (``out_rows`` for rows, ``kernel_rows``,
    ``channels``) are required; ``in_rows``, ``pad``, ``out_rows`` and ``in_channels`` may be
    omitted and are then derived, but when given they must equal the derived ones.
    """
    strategy = params.get("strategy", "rows")
    if strategy not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    start, stop = _int(params, "start"), _int(params, "stop")
    unit_name = _UNIT_FIELD[strategy]
    units = _pair(params, unit_name)
    if units is None:
        raise InvalidInput(f"strategy {strategy} needs the slice parameter {unit_name!r} ('a,b')")
    sl = canonical_slice(spec, strategy, start, stop, units)  # type: ignore[arg-type]
    for name in _RANGES:
        given = _pair(params, name)
        if given is not None and given != getattr(sl, name):
            expected = getattr(sl, name)
            raise InvalidInput(
                f"slice parameter {name}={_fmt(given)} does not match {unit_name} {_fmt(units)} of layers "
                f"[{start}, {stop}) of model {spec.name}: expected "
                f"{'none' if expected is None else _fmt(expected)}"
            )
    return sl
