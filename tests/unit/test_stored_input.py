"""An accepted NPY upload in the wire form is stored as it came: decoded once to validate it (without a
copy), never encoded again; other bodies are stored as their validated input encoded once."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgesplit import wire
from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from services.orchestrator.images import decode_npy
from services.orchestrator.service import stored_input

SPEC = get_spec("digits-cnn")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_a_wire_form_upload_is_stored_as_it_came() -> None:
    x = np.random.default_rng(0).standard_normal((1, *SPEC.input)).astype(np.float32)
    for body in (wire.encode(x), _npy(x)):
        decoded = decode_npy(body, SPEC)
        assert np.shares_memory(decoded, np.frombuffer(body, np.uint8))  # validated without a copy
        assert stored_input(body, decoded) is body
        np.testing.assert_array_equal(wire.decode(stored_input(body, decoded)), x)


@pytest.mark.parametrize("arr", [
    np.ones(SPEC.input, np.float32),  # (C, H, W): stored with the batch axis the pipeline expects
    np.ones((1, *SPEC.input), np.float64),
    np.ones((1, *SPEC.input), ">f4"),
    np.ones((1, *SPEC.input), np.uint8),
])
def test_other_arrays_are_stored_as_their_float32_input(arr: np.ndarray) -> None:
    body = _npy(arr)
    stored = stored_input(body, decode_npy(body, SPEC))
    assert stored != body
    head = wire.read_header(stored)
    assert head.dtype == np.dtype("<f4") and head.shape == (1, *SPEC.input)
    np.testing.assert_array_equal(wire.decode(stored), np.ones((1, *SPEC.input), np.float32))


def test_the_hostile_input_checks_still_come_first() -> None:
    bad = np.full((1, *SPEC.input), np.nan, np.float32)
    with pytest.raises(InvalidInput, match="NaN"):
        decode_npy(wire.encode(bad), SPEC)
