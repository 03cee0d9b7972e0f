"""Open Inference Protocol (KServe V2) REST messages and Triton's binary tensor extension.

A pure codec, like KServe's ``protocol/rest``: bytes in, validated messages and arrays out, and
back; it knows nothing of HTTP routes, Redis or models. docs/API.md ("KServe V2") is the contract.

Request body: a JSON object, optionally followed by raw tensor bytes. With the binary extension the
``Inference-Header-Content-Length`` header gives the JSON's length; each input sent as bytes carries
``parameters.binary_data_size`` and no ``data``, and its bytes follow the JSON in input order
(little-endian, row-major). Before the JSON is parsed, its size is bounded, its separators and
brackets counted against the values the caller accepts (``bytes.count``: a 16 MB body of ``0,`` or
``[0],`` is refused in milliseconds, where parsing it took the event loop 1 s and 470 MB) and its
nesting depth measured (a linear scan), so a hostile body is a 400, never a recursion error or a
stall; then pydantic validates it. Every problem raises :class:`BadRequest` (HTTP 400, as the protocol says).
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticError

from edgesplit.errors import InvalidInput

HEADER_LENGTH = "Inference-Header-Content-Length"
"""Length in bytes of the JSON part of a request or response that carries binary tensors."""
BINARY_CONTENT_TYPE = "application/octet-stream"
MAX_DEPTH = 32
"""Deepest JSON nesting accepted: a request needs 3 levels plus one per tensor dimension."""
MAX_TENSORS = 16

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("|b1"), "UINT8": np.dtype("|u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("|i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
"""V2 datatypes with a fixed-size binary form (BYTES is length-prefixed and not read here)."""


class BadRequest(InvalidInput):
    """A V2 request that does not follow the protocol or does not fit the model (HTTP 400)."""

    status = 400


Parameter = StrictBool | StrictInt | StrictFloat | StrictStr
Parameters = dict[Annotated[str, Field(max_length=256)], Parameter]


class RequestInput(BaseModel):
    """``$request_input``: a named tensor, its values in ``data`` or, binary, after the JSON."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=256)
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=8)
    datatype: str
    parameters: Parameters = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """``$request_output``: an output the client wants, ``parameters.binary_data`` for raw bytes."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=256)
    parameters: Parameters = Field(default_factory=dict)


class InferRequest(BaseModel):
    """``$inference_request``. Unknown top-level fields (the KServe SDK adds ``model_name``) are ignored."""

    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(None, max_length=256)
    parameters: Parameters = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1, max_length=MAX_TENSORS)
    outputs: list[RequestOutput] | None = Field(None, max_length=MAX_TENSORS)


class Decoded(NamedTuple):
    """A validated request and its input arrays (same order as ``request.inputs``)."""

    request: InferRequest
    arrays: list[np.ndarray]


# A JSON string, or an unterminated one running to the end: possessive, so every match attempt
# that starts at a quote succeeds and the scan stays linear whatever the body holds.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.S)


def json_depth(raw: bytes | memoryview) -> int:
    """The deepest ``[``/``{`` nesting of a JSON text, brackets inside strings not counted. Linear, and
    the arrays it builds are a byte per character plus 8 bytes per bracket (a full-length int32
    running sum over a 16 MB text of ``[0],`` took 1.3 s and 470 MB)."""
    text = bytes(raw)
    opening = text.count(b"[") + text.count(b"{")
    if opening <= MAX_DEPTH:
        return opening  # an upper bound, and small: no scan needed
    codes = np.frombuffer(_STRING.sub(b'""', text), np.uint8)
    opens = (codes == 0x5B) | (codes == 0x7B)
    at = np.flatnonzero(opens | (codes == 0x5D) | (codes == 0x7D))
    return int(np.cumsum(np.where(opens[at], 1, -1)).max(initial=0))


def count_values(head: bytes | memoryview, max_values: int) -> None:
    """Refuse a JSON text with more separators or brackets than a request of at most ``max_values``
    input values can hold (values in flat or nested lists, plus slack for the rest of the request):
    the parser would otherwise build every one of them as a Python object first."""
    text = bytes(head)
    commas = text.count(b",")
    brackets = text.count(b"[") + text.count(b"{")
    slack = 1024
    if commas > 2 * max_values + slack or brackets > max_values + slack:
        raise BadRequest(f"the JSON part of the request has {commas} commas and {brackets} brackets, more "
                         f"than a request of at most {max_values} input values holds: send the tensor "
                         f"as binary data (or fewer images)")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body of a ``Content-Encoding: gzip`` or ``deflate`` request (tritonclient's request
    compression), decoded to at most ``limit`` bytes; an identity body as it is."""
    kind = (encoding or "identity").strip().lower()
    if kind == "identity":
        return body
    if kind not in ("gzip", "deflate"):
        raise BadRequest(f"Content-Encoding {kind!r} is not read here: send identity, gzip or deflate")
    inflater = zlib.decompressobj(31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"body is not valid {kind} data: {e}") from e
    if len(out) > limit or inflater.unconsumed_tail:
        raise BadRequest(f"decompressed body is above the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest(f"truncated {kind} body")
    return out


def _split(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view):]
    text = header_length.strip()
    if not text.isdigit() or int(text) > len(view):
        raise BadRequest(f"{HEADER_LENGTH} {header_length!r} must be an integer from 0 to the body's "
                         f"{len(view)} bytes")
    n = int(text)
    return view[:n], view[n:]


def _validation_message(e: PydanticError) -> str:
    parts = []
    for err in e.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts[:5])


def parse_request(body: bytes, header_length: str | None, json_limit: int,
                  max_values: int | None = None) -> Decoded:
    """Validate a V2 infer body (JSON, optionally followed by binary tensors) and decode its inputs.

    ``json_limit`` bounds the JSON part in bytes and ``max_values`` (None: no bound) the input values
    it may write out (:func:`count_values`); both are checked before it is parsed, as is its depth.
    """
    view, rest = _split(body, header_length)
    head = bytes(view)  # one copy, counted and scanned below, then parsed
    if len(head) > json_limit:
        raise BadRequest(f"the JSON part of the request has {len(head)} bytes, above the limit of "
                         f"{json_limit} for this model (send the tensor as binary data)")
    if max_values is not None:
        count_values(head, max_values)
    if json_depth(head) > MAX_DEPTH:
        raise BadRequest(f"the JSON of the request nests deeper than {MAX_DEPTH} levels")
    try:
        request = InferRequest.model_validate_json(head)
    except PydanticError as e:
        raise BadRequest(f"invalid inference request: {_validation_message(e)}") from e
    arrays = []
    at = 0
    for tensor in request.inputs:
        array, used = _input_array(tensor, rest[at:])
        arrays.append(array)
        at += used
    if at != len(rest):
        raise BadRequest(f"{len(rest) - at} bytes after the JSON and the binary inputs are not claimed "
                         f"by any input's binary_data_size")
    return Decoded(request, arrays)


def _input_array(tensor: RequestInput, raw: memoryview) -> tuple[np.ndarray, int]:
    """The array of one input and the number of binary bytes it took from ``raw``."""
    dtype = DTYPES.get(tensor.datatype)
    if dtype is None:
        raise BadRequest(f"input {tensor.name!r}: datatype {tensor.datatype!r} is not one of "
                         f"{', '.join(DTYPES)}")
    count = int(np.prod(tensor.shape, dtype=np.int64))
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"input {tensor.name!r}: binary_data_size must be a nonnegative integer")
        if tensor.data is not None:
            raise BadRequest(f"input {tensor.name!r} has both data and binary_data_size")
        if size != count * dtype.itemsize:
            raise BadRequest(f"input {tensor.name!r}: binary_data_size {size} does not match shape "
                             f"{tensor.shape} of {tensor.datatype} ({count * dtype.itemsize} bytes)")
        if size > len(raw):
            raise BadRequest(f"input {tensor.name!r}: binary_data_size {size} runs past the body's end "
                             f"({len(raw)} bytes left)")
        return np.frombuffer(raw[:size], dtype).reshape(tensor.shape), size
    if tensor.data is None:
        raise BadRequest(f"input {tensor.name!r} has neither data nor parameters.binary_data_size")
    try:
        array = np.asarray(tensor.data)
    except ValueError as e:
        raise BadRequest(f"input {tensor.name!r}: data is not a regular array of numbers: {e}") from e
    if array.size and array.dtype.kind not in "biuf":
        raise BadRequest(f"input {tensor.name!r}: data must hold numbers (JSON true/false for BOOL)")
    if array.size != count:
        raise BadRequest(f"input {tensor.name!r}: data holds {array.size} values, shape {tensor.shape} "
                         f"needs {count}")
    return array.astype(dtype).reshape(tensor.shape), 0


def wants_binary(request: InferRequest, output: str) -> bool:
    """Whether ``output`` goes back as binary: its own ``binary_data``, else the request's
    ``binary_data_output`` (false when neither is set)."""
    for wanted in request.outputs or ():
        if wanted.name == output and "binary_data" in wanted.parameters:
            return wanted.parameters["binary_data"] is True
    return request.parameters.get("binary_data_output") is True


def datatype_of(array: np.ndarray) -> str:
    """The V2 datatype name of a numpy array."""
    for name, dtype in DTYPES.items():
        if dtype.kind == array.dtype.kind and dtype.itemsize == array.dtype.itemsize:
            return name
    raise ValueError(f"no V2 datatype for {array.dtype}")


def encode_response(head: dict[str, Any],
                    outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """The body of an infer response and the length of its JSON part (None when all JSON).

    ``head``: the response fields but ``outputs`` (``model_name``, ``model_version``, ``id``,
    ``parameters``); ``outputs``: (name, array, as binary) in the order they are answered.
    """
    tensors, blobs = [], []
    for name, array, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        tensors.append(entry)
    text = json.dumps({**head, "outputs": tensors}, separators=(",", ":")).encode()
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)
