"""The NPY codec and the slice metadata of the wire (edgesplit.wire): round trips, zero copy, refusals."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.errors import InvalidInput, InvalidPlan
from edgesplit.models import get_spec
from edgesplit.split import STRATEGIES, conv_groups, make_slices, part_total
from edgesplit.wire import canonical_slice, decode, encode, slice_from_params, slice_to_params

DTYPES = [np.float32, np.float64, np.int64, np.uint8, np.float16, np.bool_]


def _npy_header(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=4), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31 - 1))
def test_round_trip_and_numpy_compatibility(shape: list[int], dtype: type, seed: int) -> None:
    x = (np.random.default_rng(seed).standard_normal(shape) * 10).astype(dtype)
    body = encode(x)
    assert (10 + struct.unpack("<H", body[8:10])[0]) % 64 == 0  # data 64-byte aligned like np.save
    y = decode(body, expect_dtype=None)
    assert y.dtype == x.dtype and y.shape == x.shape and np.array_equal(y, x)
    assert np.array_equal(np.load(io.BytesIO(body)), x)
    saved = io.BytesIO()
    np.save(saved, x)
    assert np.array_equal(decode(saved.getvalue(), expect_dtype=None), x)


def test_headers_other_writers_may_produce_take_the_general_parser() -> None:
    """np.save's and encode()'s header is parsed by a fast pattern; any other valid header (keys in
    another order, other spacing) by the Python literal parser, with the same result."""
    data = np.arange(6, dtype="<f4").tobytes()
    for text in ("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
                 "{'descr':'<f4','fortran_order':False,'shape':(2,3)}"):
        text += " " * (63 - (10 + len(text)) % 64) + "\n"
        body = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + data
        assert np.array_equal(decode(body), np.arange(6, dtype=np.float32).reshape(2, 3))


def test_non_contiguous_and_big_endian_arrays_are_written_in_c_order_little_endian() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(decode(encode(x.transpose(2, 0, 1))), x.transpose(2, 0, 1))
    big = x.astype(">f4")
    assert np.array_equal(decode(encode(big)), x)


def test_decode_is_zero_copy() -> None:
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    buf = bytearray(encode(x))
    y = decode(buf, expect_shape=(None, 1, 3, 4))
    assert y.flags.writeable
    y[0, 0, 0, 0] = 42.0  # writes through to the request buffer: no copy was made
    assert decode(buf)[0, 0, 0, 0] == 42.0
    assert not decode(bytes(buf)).flags.writeable


@pytest.mark.parametrize(("body", "message"), [
    (b"not an npy array at all", "magic"),
    (b"\x93NUMPY\x02\x00" + b"\x00" * 60, "version 2.0"),
    (b"\x93NUMPY\x01\x00\xff\xff" + b" " * 100, "too long"),
    (_npy_header("<f4", False, (2, 3))[:40], "truncated NPY body: header"),
    (_npy_header("<f4", False, (2, 3)) + b"\x00" * 20, "truncated NPY body: shape [2, 3]"),
    (_npy_header("<f4", False, (2, 3)) + b"\x00" * 28, "trailing bytes"),
    (_npy_header("<f8", False, (2, 3)) + b"\x00" * 48, "expected <f4 (float32)"),
    (_npy_header(">f4", False, (2, 3)) + b"\x00" * 24, "expected <f4 (float32)"),
    (_npy_header("<f4", True, (2, 3)) + b"\x00" * 24, "Fortran order"),
    (_npy_header("|O", False, (1,)) + b"\x00" * 8, "Python objects"),
    (_npy_header("<f4", False, (-1, 3)), "non-negative"),
    (b"\x93NUMPY\x01\x00\x08\x00[1, 2]\n ", "dict"),
])
def test_malformed_bodies_are_refused_with_a_message(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode(body)
    assert message in str(err.value)


def test_shape_pattern_is_checked() -> None:
    body = encode(np.zeros((2, 3, 5, 7), np.float32))
    assert decode(body, expect_shape=(None, 3, 5, 7)).shape == (2, 3, 5, 7)
    with pytest.raises(InvalidInput, match=r"shape \[2, 3, 5, 7\], expected \[N, 3, 4, 7\]"):
        decode(body, expect_shape=(None, 3, 4, 7))
    with pytest.raises(InvalidInput, match=r"expected \[N, 3, 5\]"):
        decode(body, expect_shape=(None, 3, 5))


def _all_slices(name: str) -> list:
    spec = get_spec(name)
    out = []
    for start, stop in [*conv_groups(spec), (0, spec.n_edge)]:
        for strategy in STRATEGIES:
            try:
                total = part_total(spec, start, stop, strategy)
                out += make_slices(spec, start, stop, strategy, [total // 3, total - total // 3 - 1, 1])
            except InvalidPlan:
                continue
    return out


@pytest.mark.parametrize("name", ["digits-cnn", "alexnet-paper", "vgg16-paper"])
def test_slice_params_round_trip(name: str) -> None:
    spec = get_spec(name)
    slices = _all_slices(name)
    assert {s.strategy for s in slices} == set(STRATEGIES)
    for sl in slices:
        params = slice_to_params(sl)
        assert all(isinstance(v, str) for v in params.values())
        assert slice_from_params(params, spec) == sl
        minimal = {k: params[k] for k in ("strategy", "start", "stop")}
        unit = {"rows": "out_rows", "kernel-rows": "kernel_rows", "channels": "channels"}[sl.strategy]
        minimal[unit] = params[unit]
        assert slice_from_params(minimal, spec) == sl  # the derived ranges are filled in


def test_bad_slice_params_are_refused() -> None:
    spec = get_spec("alexnet-paper")
    good = slice_to_params(canonical_slice(spec, "rows", 2, 4, (0, 9)))
    cases: list[tuple[dict[str, str], type[Exception], str]] = [
        ({**good, "strategy": "diagonal"}, InvalidInput, "unknown strategy"),
        ({k: v for k, v in good.items() if k != "start"}, InvalidInput, "missing slice parameter 'start'"),
        ({**good, "start": "two"}, InvalidInput, "must be an integer"),
        ({**good, "stop": "99"}, InvalidPlan, r"not inside the edge layers \[0, 10\)"),
        ({**good, "out_rows": "0,99"}, InvalidInput, r"out rows \[0, 99\) out of range.*18"),
        ({**good, "out_rows": "5"}, InvalidInput, "two integers"),
        ({**good, "in_rows": "0,15"}, InvalidInput, r"in_rows=0,15 does not match.*expected 0,16"),
        ({**good, "pad": "1,0"}, InvalidInput, "expected 0,0"),
        ({k: v for k, v in good.items() if k != "out_rows"}, InvalidInput, "needs the slice parameter"),
        ({"strategy": "kernel-rows", "start": "2", "stop": "4", "kernel_rows": "0,9"}, InvalidInput,
         r"kernel rows \[0, 9\) out of range"),
        ({"strategy": "channels", "start": "0", "stop": "4", "channels": "0,9"}, InvalidPlan,
         "at most one conv"),
    ]
    for params, exc, message in cases:
        with pytest.raises(exc, match=message):
            slice_from_params(params, spec)


@pytest.mark.parametrize("value", ["٣", "1_0", " 3", "3 ", "+3", "0x3", "9" * 12, "", "३"])
def test_slice_integers_are_ascii_digits_only(value: str) -> None:
    spec = get_spec("alexnet-paper")
    good = slice_to_params(canonical_slice(spec, "rows", 2, 4, (0, 9)))
    with pytest.raises(InvalidInput, match="ASCII digits"):
        slice_from_params({**good, "start": value}, spec)
    with pytest.raises(InvalidInput, match="ASCII digits"):
        slice_from_params({**good, "out_rows": f"0,{value}"}, spec)


@pytest.mark.parametrize(("header", "message"), [
    ("{'descr': ('<f4', -1), 'fortran_order': False, 'shape': (2,), }", "exactly the keys"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648, 2147483648), }", "dimension above"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1, " * 70 + "), }", "at most 8"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 9223372036854775807), }", "dimension above"),
    ("{'descr': 'V0', 'fortran_order': False, 'shape': (5,), }", "real number type"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': " + "[" * 1900 + "]" * 1900 + ", }",
     "exactly the keys"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", "not a tuple"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", "exactly the keys"),
    ("{'descr': '<f4', 'descr': '<f4', 'shape': (2, 3)}", "exactly the keys"),
    ("{'descr': 'f4', 'fortran_order': False, 'shape': (2, 3)}", "byte order"),
    ("{'descr': '<U3', 'fortran_order': False, 'shape': (2, 3)}", "real number type"),
    ("{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}", "exactly the keys"),
    ("{'descr': '<f4', 'fortran_order': False, 'shape': (٣,)}", "exactly the keys"),
])
def test_hostile_headers_are_refused_before_any_allocation(header: str, message: str) -> None:
    """The headers that made the literal parser or numpy raise (a 500) are InvalidInput (422)."""
    text = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    body = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + b"\x00" * 24
    with pytest.raises(InvalidInput, match=message):
        decode(body, expect_dtype=None)
