"""The Open Inference Protocol codec (services/orchestrator/oip.py): JSON and binary tensors, the
bounds checked before parsing, and the responses, read back by tritonclient's own result parser."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from services.orchestrator import oip
from services.orchestrator.oip import BadRequest


def _binary_request(arrays: dict[str, np.ndarray], **extra: object) -> tuple[bytes, str]:
    inputs = [{"name": n, "shape": list(a.shape), "datatype": oip.datatype_of(a),
               "parameters": {"binary_data_size": a.nbytes}} for n, a in arrays.items()]
    head = json.dumps({"inputs": inputs, **extra}).encode()
    return head + b"".join(a.tobytes() for a in arrays.values()), str(len(head))


def test_binary_and_json_inputs_decode_to_the_same_arrays() -> None:
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    body, length = _binary_request({"input": x}, id="r-1", parameters={"priority": 0})
    binary = oip.parse_request(body, length, 1 << 20)
    plain = oip.parse_request(json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 4, 5],
                                                      "datatype": "FP32", "data": x.tolist()}]}).encode(),
                              None, 1 << 20)
    np.testing.assert_array_equal(binary.arrays[0], x)
    np.testing.assert_array_equal(plain.arrays[0], x)
    assert binary.request.id == "r-1" and binary.request.parameters == {"priority": 0}


def test_fp64_and_fp16_binary_inputs_keep_their_values() -> None:
    for dtype in (np.float64, np.float16):
        x = (np.arange(6).reshape(2, 3) / 4).astype(dtype)
        body, length = _binary_request({"a": x})
        np.testing.assert_array_equal(oip.parse_request(body, length, 1 << 20).arrays[0], x)


@pytest.mark.parametrize(("body", "length", "message"), [
    (b'{"inputs": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", None, "nests deeper"),
    (b"[" * 50_000, None, "nests deeper"),
    (b'{"inputs": []}', None, "inputs"),
    (b"not json", None, "invalid inference request"),
    (b'{"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [1, "x"]}]}', None,
     "numbers"),
    (b'{"inputs": [{"name": "input", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}', None, "needs 3"),
    (b'{"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [[1], [2, 3]]}]}', None,
     "regular array"),
    (b'{"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": [1, 2]}]}', None,
     "datatype"),
    (b'{"inputs": [{"name": "input", "shape": [2], "datatype": "FP32"}]}', None, "neither data"),
    (b'{"inputs": [{"name": "input", "shape": [2], "datatype": "FP32",'
     b' "parameters": {"binary_data_size": 8}}]}' + b"\0" * 4, "json", "binary_data_size"),
    (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32",'
     b' "parameters": {"binary_data_size": 4}}]}' + b"\0" * 12, "json", "not claimed"),
    (b'{"inputs": []}', "999", "Inference-Header-Content-Length"),
    (b'{"inputs": []}', "-1", "Inference-Header-Content-Length"),
])
def test_bad_requests_are_400_with_a_message(body: bytes, length: str | None, message: str) -> None:
    if length == "json":  # the JSON part ends at its last brace
        length = str(body.rindex(b"}") + 1)
    with pytest.raises(BadRequest, match=message) as info:
        oip.parse_request(body, length, 1 << 20)
    assert info.value.status == 400


def test_json_above_the_limit_is_refused_before_parsing() -> None:
    body = json.dumps({"inputs": [{"name": "input", "shape": [1000], "datatype": "FP32",
                                   "data": [0.5] * 1000}]}).encode()
    with pytest.raises(BadRequest, match="above the limit"):
        oip.parse_request(body, None, 1000)


@pytest.mark.parametrize("unit", [b"0,", b"[0],", b"[[[[0]]]],", b"{},"])
def test_json_with_more_values_than_allowed_is_refused_before_parsing(unit: bytes) -> None:
    """A body within the byte limit whose separators or brackets outnumber what a request of at most
    ``max_values`` values holds: 400 naming the binary form, without parsing (the parser built every
    value as a Python object: a 16 MB body of ``0,`` took 1 s and 470 MB)."""
    body = (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": ['
            + unit * 200_000 + b'0]}]}')
    with pytest.raises(BadRequest, match="send the tensor as binary data") as info:
        oip.parse_request(body, None, len(body), max_values=10_000)
    assert info.value.status == 400
    assert "commas" in str(info.value) and "10000 input values" in str(info.value)


def test_the_largest_json_request_allowed_still_parses_flat_and_nested() -> None:
    """``max_values`` values written out flat or as nested lists (a bracket per row of each image) pass
    the count and decode to the array sent."""
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    for data in (x.ravel().tolist(), x.tolist()):
        body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                       "data": data}]}).encode()
        decoded = oip.parse_request(body, None, len(body), max_values=x.size)
        np.testing.assert_array_equal(decoded.arrays[0], x)
    with pytest.raises(BadRequest, match="commas"):
        flat = json.dumps({"inputs": [{"name": "input", "shape": [9000], "datatype": "FP32",
                                       "data": [0.0] * 9000}]}).encode()
        oip.parse_request(flat, None, len(flat), max_values=x.size)


def test_depth_ignores_brackets_inside_strings_and_stays_linear_on_hostile_strings() -> None:
    assert oip.json_depth(b'{"id": "' + b"[" * 100 + b'", "a": [[1]]}') == 3
    assert oip.json_depth(b'{"id": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "x": [[[1]]]}') == 4
    # an unterminated string of escaped quotes: one linear scan (a retry at every quote would be
    # quadratic and take minutes); its brackets do not count
    assert oip.json_depth(b"[" * 40 + b'"' + b'\\"[' * 200_000 + b"\\") == 40
    assert oip.json_depth(b"[" * 40 + b"]" * 40) == 40
    assert oip.json_depth(b"[" + b"[1],{}," * 1000 + b'"]]]"]') == 2  # closings cancel openings


def test_compressed_requests_are_inflated_within_the_limit() -> None:
    raw = b'{"inputs": []}' * 10
    assert oip.decompress(gzip.compress(raw), "gzip", 1000) == raw
    assert oip.decompress(zlib.compress(raw), "deflate", 1000) == raw
    with pytest.raises(BadRequest, match="above the limit"):
        oip.decompress(gzip.compress(b"\0" * 100_000), "gzip", 1000)
    with pytest.raises(BadRequest, match="not read here"):
        oip.decompress(raw, "br", 1000)


def test_binary_output_selection_and_tritonclient_reads_the_response() -> None:
    from tritonclient.http import InferResult

    logits = np.array([[1.5, -2.0, 0.25]], np.float32)
    probs = np.array([[0.5, 0.25, 0.25]], np.float32)
    request = oip.InferRequest.model_validate({
        "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [0]}],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "logits"}, {"name": "probabilities", "parameters": {"binary_data": False}}]})
    assert oip.wants_binary(request, "logits") and not oip.wants_binary(request, "probabilities")
    body, length = oip.encode_response({"model_name": "m", "id": "r-7"},
                                       [("logits", logits, True), ("probabilities", probs, False)])
    assert length is not None and json.loads(body[:length])["outputs"][0]["parameters"] == {
        "binary_data_size": 12}
    result = InferResult.from_response_body(body, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("logits"), logits)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probs)
    assert result.get_response()["id"] == "r-7"
    body, length = oip.encode_response({"model_name": "m"}, [("logits", logits, False)])
    assert length is None and json.loads(body)["outputs"][0]["data"] == logits.ravel().tolist()
