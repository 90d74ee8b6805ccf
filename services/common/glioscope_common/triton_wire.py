"""Triton's gRPC ModelInfer messages with the tensor bytes copied once each way.

tritonclient.grpc copies an input tensor into bytes, into the protobuf message and again when gRPC
serialises it, and the output three times on the way back; for a 160³ patch that is about 400 MB
of copies into fresh memory per request. Here the message header (names, shapes, datatypes,
parameters) is still built and parsed by tritonclient's generated protobuf classes; only the tensor
fields are written and found directly in the protobuf wire format: `raw_input_contents` (field 7 of
ModelInferRequest) is appended to the serialised header (a message's fields may come in any order and
concatenated encodings merge), and `raw_output_contents` (field 6 of ModelInferResponse) is returned as
a read-only view of the received message. Measured in docs/performance.md (fifth session).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tritonclient.grpc import service_pb2 as pb

MODEL_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"

_LENGTH_DELIMITED = 2
_RAW_INPUT_CONTENTS = 7  # ModelInferRequest.raw_input_contents
_RAW_OUTPUT_CONTENTS = 6  # ModelInferResponse.raw_output_contents


class WireFormatError(ValueError):
    """A ModelInfer response that cannot be read."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _read_varint(buffer: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(buffer) or shift > 63:
            raise WireFormatError("truncated or malformed varint in a ModelInfer response")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def encode_infer_request(
    model_name: str,
    model_version: str,
    input_name: str,
    datatype: str,
    tensor: np.ndarray,
    output_names: Sequence[str],
) -> bytes:
    """A serialised ModelInferRequest for one input given as raw bytes (C order)."""
    request = pb.ModelInferRequest(model_name=model_name, model_version=model_version)
    spec = request.inputs.add()
    spec.name = input_name
    spec.datatype = datatype
    spec.shape.extend(int(d) for d in tensor.shape)
    for name in output_names:
        request.outputs.add().name = name
    data = memoryview(np.ascontiguousarray(tensor)).cast("B")
    tag = _varint(_RAW_INPUT_CONTENTS << 3 | _LENGTH_DELIMITED)
    return b"".join((request.SerializeToString(), tag, _varint(data.nbytes), data))


def decode_infer_response(message: bytes) -> tuple[pb.ModelInferResponse, list[memoryview]]:
    """The response's header (without its tensors) and its raw output contents, in output order, as
    views of `message` (no copy)."""
    view = memoryview(message)
    header_parts: list[memoryview] = []
    contents: list[memoryview] = []
    position = 0
    while position < len(view):
        start = position
        key, position = _read_varint(view, position)
        wire_type = key & 7
        if wire_type == 0:
            _, position = _read_varint(view, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(view, position)
            if key >> 3 == _RAW_OUTPUT_CONTENTS:
                if position + length > len(view):
                    raise WireFormatError("a ModelInfer response's output is cut short")
                contents.append(view[position : position + length])
                position += length
                continue
            position += length
        else:
            raise WireFormatError(f"unsupported protobuf wire type {wire_type} in a ModelInfer response")
        if position > len(view):
            raise WireFormatError("a ModelInfer response is cut short")
        header_parts.append(view[start:position])
    try:
        header = pb.ModelInferResponse.FromString(b"".join(header_parts))
    except Exception as exc:  # protobuf's DecodeError
        raise WireFormatError(f"unreadable ModelInfer response header: {exc}") from exc
    return header, contents


def output_tensor(
    header: pb.ModelInferResponse, contents: Sequence[memoryview], name: str, dtypes: dict[str, np.dtype]
) -> tuple[np.ndarray, str]:
    """Output `name` as a read-only array over the response's bytes, and its Triton datatype."""
    for index, output in enumerate(header.outputs):
        if output.name != name:
            continue
        if index >= len(contents):
            raise WireFormatError(f"output {name!r} came without raw contents")
        if output.datatype not in dtypes:
            raise WireFormatError(f"output {name!r} is {output.datatype}; expected one of {sorted(dtypes)}")
        dtype = np.dtype(dtypes[output.datatype])
        shape = tuple(int(d) for d in output.shape)
        expected = int(np.prod(shape)) * dtype.itemsize
        if contents[index].nbytes != expected:
            raise WireFormatError(f"output {name!r} has {contents[index].nbytes} bytes for shape {shape} ({expected} expected)")
        return np.frombuffer(contents[index], dtype=dtype).reshape(shape), output.datatype
    raise WireFormatError(f"no output {name!r} in the response")
