"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, grpcio's asyncio server).

Health, metadata and inference, on ``grpc_port`` when it is set, beside the REST routes of
:mod:`services.orchestrator.v2`, whose handlers it calls: the same models, versions, readiness,
outputs, Triton ``priority`` and ``timeout`` (microseconds) and errors. Inputs come as
``raw_input_contents`` (what tritonclient and the KServe SDK send) or typed ``contents``; outputs go
back as ``raw_output_contents`` (little-endian, row-major), as Triton answers. With ``api_token``
set, every call but the health ones needs the metadata ``authorization: Bearer <api_token>``.
Errors map to gRPC status codes (400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 404 NOT_FOUND,
429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import grpc
import numpy as np

from edgesplit.errors import EdgesplitError
from services.orchestrator import oip
from services.orchestrator.grpcv2 import grpc_predict_v2_pb2 as pb
from services.orchestrator.grpcv2 import grpc_predict_v2_pb2_grpc as pb_grpc
from services.orchestrator.oip import BadRequest
from services.orchestrator.v2 import EXTENSIONS, V2Api

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.ALREADY_EXISTS,
         413: grpc.StatusCode.RESOURCE_EXHAUSTED, 422: grpc.StatusCode.INVALID_ARGUMENT,
         429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE,
         504: grpc.StatusCode.DEADLINE_EXCEEDED}
CONTENTS = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
            "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
            "FP32": "fp32_contents", "FP64": "fp64_contents"}
"""Where each datatype's values go in ``InferTensorContents`` (FP16 only as raw bytes)."""


def _param(p: pb.InferParameter) -> oip.Parameter:
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind is not None else ""


def _params(params: Any) -> dict[str, oip.Parameter]:
    return {k: _param(v) for k, v in params.items()}


def _set_params(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, float):
            target[key].double_param = value
        else:
            target[key].string_param = str(value)


def decode_request(request: pb.ModelInferRequest) -> oip.Decoded:
    """The request as the REST path sees it: validated fields and one array per input."""
    try:
        parsed = oip.InferRequest.model_validate({
            "id": request.id or None, "parameters": _params(request.parameters),
            "inputs": [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype,
                        "parameters": _params(t.parameters)} for t in request.inputs],
            "outputs": [{"name": o.name, "parameters": _params(o.parameters)}
                        for o in request.outputs] or None})
    except ValueError as e:
        raise BadRequest(f"invalid inference request: {e}") from e
    raw: Sequence[bytes] = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    arrays = [_array(t, raw[i] if raw else None) for i, t in enumerate(request.inputs)]
    return oip.Decoded(parsed, arrays)


def _array(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    dtype = oip.DTYPES.get(tensor.datatype)
    if dtype is None:
        raise BadRequest(f"input {tensor.name!r}: datatype {tensor.datatype!r} is not one of "
                         f"{', '.join(oip.DTYPES)}")
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {tensor.name!r}: shape {shape} has a negative dimension")
    count = int(np.prod(shape, dtype=np.int64))
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise BadRequest(f"input {tensor.name!r}: {len(raw)} raw bytes, shape {shape} of "
                             f"{tensor.datatype} needs {count * dtype.itemsize}")
        return np.frombuffer(raw, dtype).reshape(shape)
    field = CONTENTS.get(tensor.datatype)
    values = getattr(tensor.contents, field) if field is not None else []
    if len(values) != count:
        raise BadRequest(f"input {tensor.name!r}: {len(values)} values in contents, shape {shape} "
                         f"needs {count}")
    return np.asarray(values).astype(dtype).reshape(shape)


def encode_response(head: dict[str, Any],
                    outputs: list[tuple[str, np.ndarray, bool]]) -> pb.ModelInferResponse:
    """The gRPC response: the REST response's fields, the outputs as ``raw_output_contents``."""
    response = pb.ModelInferResponse(model_name=head["model_name"], model_version=head["model_version"],
                                     id=head["id"])
    _set_params(response.parameters, head["parameters"])
    for name, array, _binary in outputs:
        response.outputs.add(name=name, datatype=oip.datatype_of(array), shape=list(array.shape))
        little = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
        response.raw_output_contents.append(little.tobytes())
    return response


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The service's RPCs over one :class:`V2Api`."""

    def __init__(self, api: V2Api, api_token: str | None) -> None:
        self.api = api
        self.expected = f"Bearer {api_token}".encode() if api_token else None

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if self.expected is None:
            return
        got = dict(context.invocation_metadata() or ()).get("authorization")
        if got is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing bearer token: send the metadata 'authorization: Bearer <token>'")
        elif not hmac.compare_digest(str(got).encode("latin1", "replace"), self.expected):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")

    @staticmethod
    async def _fail(context: grpc.aio.ServicerContext, e: EdgesplitError) -> None:
        await context.abort(CODES.get(e.status, grpc.StatusCode.INTERNAL), str(e))

    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await self.api.orch.not_ready() is None)

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        await self._check(context)
        try:
            self.api.spec(request.name, request.version or None)
        except EdgesplitError as e:
            await self._fail(context, e)
        return pb.ModelReadyResponse(ready=await self.api.not_ready(request.name) is None)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        await self._check(context)
        return pb.ServerMetadataResponse(name="edgesplit", version=metadata.version("edgesplit"),
                                         extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        await self._check(context)
        try:
            meta = self.api.metadata(request.name, request.version or None)
        except EdgesplitError as e:
            await self._fail(context, e)
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensors(**t) for t in meta["inputs"]], outputs=[tensors(**t) for t in meta["outputs"]])

    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        await self._check(context)
        try:
            decoded = decode_request(request)
            head, outputs = await self.api.run(request.model_name, request.model_version or None, decoded)
        except EdgesplitError as e:
            await self._fail(context, BadRequest(str(e)) if e.status == 422 else e)
        return encode_response(head, outputs)


async def start_server(api: V2Api, host: str, port: int, api_token: str | None,
                       max_message_bytes: int) -> grpc.aio.Server:
    """A started gRPC server on ``host:port`` (stop it with ``await server.stop(grace)``)."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(api, api_token), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    return server
