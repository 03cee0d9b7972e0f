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

import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from edgesplit.errors import InvalidInput
from edgesplit.models.spec import ModelSpec
from edgesplit.split import STRATEGIES, STRATEGY, Slice, Strategy, check_group, make_slices, part_total

MAGIC = b"\x93NUMPY"
CONTENT_TYPE = "application/x-npy"
_ALIGN = 64
_MAX_HEADER = 4096  # a 4-d shape needs < 100 bytes; refuse absurd headers before parsing them
MAX_NDIM = 8  # the services exchange 2-d and 4-d arrays; numpy itself stops at 64
MAX_DIM = 2**31 - 1  # per dimension; the data length bounds the product (it must equal the body)
# the only dtypes a body may carry: booleans, integers and IEEE floats of the usual sizes
_ITEMSIZES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8)}

ShapePattern = Sequence[int | None]
# the header np.save and encode() write; anything else goes through the strict entry parser below
_CANONICAL = re.compile(r"\{'descr': '([<>|]?[a-z]\d{1,2})', 'fortran_order': (True|False), "
                        r"'shape': \(((?:\d{1,19}, ){0,8}\d{0,19})\), \} *\n")
# one "key: value" entry of a header dict: a quoted descr, a bool, or a tuple of decimal integers.
# Nothing else is accepted (no nesting, no expressions), so parsing is linear and cannot recurse.
_ENTRY = re.compile(r"""\s*(['"])(descr|fortran_order|shape)\1\s*:\s*"""
                    r"""(?:(['"])([<>|=]?[a-zA-Z]\d{0,3})\3|(True|False)|\(([-+0-9 ,]{0,240})\))\s*""")
_DESCR = re.compile(r"([<>|]?)([a-zA-Z])(\d{0,3})")


class NpyHeader(NamedTuple):
    """What an NPY header says: the data's dtype, its shape, and where the data starts in the body."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


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


def _dtype(descr: str) -> np.dtype:
    """The dtype of a descr such as ``'<f4'``: only booleans, integers and floats, explicit byte order."""
    m = _DESCR.fullmatch(descr)
    sizes = _ITEMSIZES.get(m.group(2), ()) if m else ()
    if m is None or not m.group(3) or int(m.group(3)) not in sizes:
        raise InvalidInput(f"NPY descr {descr!r} is not accepted; expected a real number type such as '<f4' "
                           "(bool b1, int/uint i1-i8/u1-u8, float f2/f4/f8)")
    order, size = m.group(1), int(m.group(3))
    if size > 1 and order not in ("<", ">"):
        raise InvalidInput(f"NPY descr {descr!r} has no byte order; expected '<' or '>', e.g. '<f4'")
    return np.dtype(f"{order if size > 1 else '|'}{m.group(2)}{size}")


def _shape(text: str) -> tuple[int, ...]:
    """A tuple literal's items: ``()``, ``(3,)``, ``(2, 3)`` or ``(2, 3,)``; bounded rank and sizes."""
    items = [t.strip() for t in text.split(",")]
    if items[-1] == "" and (len(items) > 1 or text.strip() == ""):
        items.pop()  # a trailing comma, or the empty tuple
    elif len(items) == 1:
        raise InvalidInput(f"NPY shape ({text}) is not a tuple; a 1-d shape is written (n,)")
    if len(items) > MAX_NDIM:
        raise InvalidInput(f"NPY shape has {len(items)} dimensions; expected at most {MAX_NDIM}")
    if not all(t.isascii() and t.isdigit() for t in items):
        raise InvalidInput(f"NPY shape ({text}) must be a tuple of non-negative integers")
    if any(len(t) > 10 or int(t) > MAX_DIM for t in items):
        raise InvalidInput(f"NPY shape ({text}) has a dimension above {MAX_DIM}")
    shape = tuple(int(t) for t in items)
    return shape


def _entries(text: str) -> dict[str, str | tuple[int, ...] | bool]:
    """The three entries of a header dict ``{'descr': ..., 'fortran_order': ..., 'shape': (...)}``,
    in any order, with a trailing comma or not, padded with spaces and a final newline."""
    body = text.rstrip(" \n")
    if not (body.startswith("{") and body.endswith("}")):
        raise InvalidInput("NPY header must be a dict with exactly the keys descr, fortran_order, shape")
    out: dict[str, str | tuple[int, ...] | bool] = {}
    at, end = 1, len(body) - 1
    while at < end:
        m = _ENTRY.match(body, at, end)
        if m is None or m.group(2) in out:
            raise InvalidInput("NPY header must be a dict with exactly the keys descr, fortran_order, shape "
                               "(a quoted dtype such as '<f4', True or False, a tuple of integers)")
        key, text_v, bool_v, tuple_v = m.group(2), m.group(4), m.group(5), m.group(6)
        if (key == "descr") != (text_v is not None) or (key == "fortran_order") != (bool_v is not None):
            raise InvalidInput(f"NPY header entry {key!r} has a value of the wrong kind")
        out[key] = (text_v if key == "descr" else bool_v == "True" if key == "fortran_order"
                    else _shape(tuple_v))
        at = m.end()
        if at < end:
            if body[at] != ",":
                raise InvalidInput("NPY header entries must be separated by commas")
            at += 1
            while at < end and body[at] in " \n":
                at += 1
    if set(out) != {"descr", "fortran_order", "shape"}:
        raise InvalidInput("NPY header must be a dict with exactly the keys descr, fortran_order, shape")
    return out


def read_header(body: bytes | bytearray | memoryview) -> NpyHeader:
    """Parse and check an NPY v1 header, without touching the data.

    A strict parser (no ``literal_eval``): the header is a dict of exactly ``descr`` (bool, int, uint
    or float of the usual sizes), ``fortran_order`` (must be False) and ``shape`` (at most
    :data:`MAX_NDIM` dimensions of at most :data:`MAX_DIM`). Raises InvalidInput naming what was expected.
    """
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
    if fast is not None:  # what np.save and encode() write
        descr, order, dims = fast.groups()
        fields: dict[str, str | tuple[int, ...] | bool] = {
            "descr": descr, "fortran_order": order == "True", "shape": _shape(dims)}
    else:
        fields = _entries(text)
    descr = str(fields["descr"])
    if descr in ("|O", "O", "<O", ">O"):
        raise InvalidInput("NPY arrays of Python objects are refused")
    dtype = _dtype(descr)
    if fields["fortran_order"] is not False:
        raise InvalidInput("array is in Fortran order, expected C order (fortran_order: False)")
    shape = fields["shape"]
    assert isinstance(shape, tuple)
    return NpyHeader(dtype, shape, 10 + hlen)


def _check_shape(shape: tuple[int, ...], expect: ShapePattern) -> None:
    ok = len(shape) == len(expect) and all(e is None or e == d for d, e in zip(shape, expect, strict=False))
    if not ok:
        want = "[" + ", ".join("N" if e is None else str(e) for e in expect) + "]"
        raise InvalidInput(f"array has shape {list(shape)}, expected {want}")


def decode(body: bytes | bytearray | memoryview, expect_dtype: np.dtype | type | str | None = np.float32,
           expect_shape: ShapePattern | None = None) -> np.ndarray:
    """Parse an NPY v1 body without copying its data.

    ``expect_dtype`` (default float32, little-endian; ``None`` accepts any number type) and
    ``expect_shape`` (``None`` entries match any size) are checked from the header, before the data is
    looked at; so are the magic bytes, the version, C order and the data length. Every failure raises
    InvalidInput saying what was expected.
    """
    head = read_header(body)
    dtype, shape = head.dtype, head.shape
    if expect_dtype is not None:
        want = np.dtype(expect_dtype).newbyteorder("<")
        if dtype != want:
            raise InvalidInput(f"array has dtype {dtype.str} ({dtype}), expected {want.str} ({want})")
    if expect_shape is not None:
        _check_shape(shape, expect_shape)
    need = head.nbytes
    have = len(body) - head.offset
    if have != need:
        what = "truncated NPY body" if have < need else "NPY body has trailing bytes"
        raise InvalidInput(f"{what}: shape {list(shape)} of {dtype} needs {need} data bytes, got {have}")
    return np.frombuffer(body, dtype=dtype, count=math.prod(shape), offset=head.offset).reshape(shape)


# --- slice metadata ---------------------------------------------------------------------------------

_RANGES = ("in_rows", "pad", "out_rows", "kernel_rows", "channels", "in_channels")
# Python's int() also takes "٣", "1_0" and " 3 ": the wire says integer, so ASCII digits only
_ASCII_INT = re.compile(r"-?[0-9]{1,9}")


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
    if _ASCII_INT.fullmatch(raw) is None:
        raise InvalidInput(f"slice parameter {name}={raw!r} must be an integer (ASCII digits)")
    return int(raw)


def _pair(params: Mapping[str, str], name: str) -> tuple[int, int] | None:
    raw = params.get(name)
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) != 2 or not all(_ASCII_INT.fullmatch(v) for v in parts):
        raise InvalidInput(f"slice parameter {name}={raw!r} must be two integers 'a,b' (ASCII digits)")
    return (int(parts[0]), int(parts[1]))


def canonical_slice(spec: ModelSpec, strategy: Strategy, start: int, stop: int,
                    units: tuple[int, int]) -> Slice:
    """The slice computing units ``[a, b)`` (rows, kernel rows or channels) of group ``[start, stop)``.

    Raises InvalidPlan (422) for a bad group, InvalidInput (422) for units outside the group.
    """
    check_group(spec, start, stop, strategy)
    total = part_total(spec, start, stop, strategy)
    a, b = units
    if not 0 <= a <= b <= total:
        what = STRATEGY[strategy].unit_field.replace("_", " ")
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
    unit_name = STRATEGY[strategy].unit_field
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
