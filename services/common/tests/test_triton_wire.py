"""The ModelInfer wire codec against tritonclient's own protobuf classes."""

from __future__ import annotations

import numpy as np
import pytest

from glioscope_common.dev.testing import require_module

pb = require_module("tritonclient.grpc.service_pb2")

from glioscope_common.inference_backend import TRITON_DTYPES  # noqa: E402
from glioscope_common.triton_wire import (  # noqa: E402
    WireFormatError,
    decode_infer_response,
    encode_infer_request,
    output_tensor,
)


def test_a_request_reads_back_as_the_same_protobuf_message() -> None:
    tensor = np.random.default_rng(0).standard_normal((2, 4, 5, 6, 7)).astype(np.float32)
    message = encode_infer_request("glioscope_unet", "3", "image", "FP32", tensor, ["logits"])
    request = pb.ModelInferRequest.FromString(message)
    assert request.model_name == "glioscope_unet" and request.model_version == "3"
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [("image", "FP32", [2, 4, 5, 6, 7])]
    assert [o.name for o in request.outputs] == ["logits"]
    assert len(request.raw_input_contents) == 1
    np.testing.assert_array_equal(np.frombuffer(request.raw_input_contents[0], np.float32).reshape(tensor.shape), tensor)


def test_a_non_contiguous_tensor_is_sent_in_c_order() -> None:
    tensor = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4).transpose(2, 1, 0)
    request = pb.ModelInferRequest.FromString(encode_infer_request("m", "", "x", "FP16", tensor, ["y"]))
    np.testing.assert_array_equal(np.frombuffer(request.raw_input_contents[0], np.float16).reshape(tensor.shape), tensor)


def _response(outputs: dict[str, np.ndarray]) -> bytes:
    response = pb.ModelInferResponse(model_name="glioscope_unet", model_version="1", id="r1")
    response.parameters["sequence_id"].int64_param = 7
    for name, array in outputs.items():
        spec = response.outputs.add()
        spec.name = name
        spec.datatype = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16"}[array.dtype]
        spec.shape.extend(array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response.SerializeToString()


def test_a_response_gives_its_outputs_as_views_of_the_message() -> None:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((1, 4, 6, 6, 6)).astype(np.float32)
    extra = rng.standard_normal((1, 2)).astype(np.float16)
    message = _response({"extra": extra, "logits": logits})
    header, contents = decode_infer_response(message)
    assert header.model_name == "glioscope_unet" and header.id == "r1"
    assert header.parameters["sequence_id"].int64_param == 7
    assert len(header.raw_output_contents) == 0 and len(contents) == 2
    out, datatype = output_tensor(header, contents, "logits", TRITON_DTYPES)
    assert datatype == "FP32"
    np.testing.assert_array_equal(out, logits)
    assert not out.flags.writeable
    assert np.shares_memory(out, np.frombuffer(message, np.uint8))  # no copy of the tensor
    second, datatype = output_tensor(header, contents, "extra", TRITON_DTYPES)
    assert datatype == "FP16"
    np.testing.assert_array_equal(second, extra)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda m: m[:-10], "cut short"),
        (lambda m: m + b"\x80", "varint"),
        (lambda m: m + b"\x0b", "wire type 3"),
    ],
)
def test_a_damaged_response_is_refused(damage, match: str) -> None:
    message = _response({"logits": np.zeros((1, 2, 2), np.float32)})
    with pytest.raises(WireFormatError, match=match):
        decode_infer_response(damage(message))


def test_an_output_that_does_not_match_its_header_is_refused() -> None:
    header, contents = decode_infer_response(_response({"logits": np.zeros((1, 2, 2), np.float32)}))
    with pytest.raises(WireFormatError, match="no output 'probabilities'"):
        output_tensor(header, contents, "probabilities", TRITON_DTYPES)
    header.outputs[0].shape[:] = [1, 2, 3]
    with pytest.raises(WireFormatError, match="16 bytes for shape"):
        output_tensor(header, contents, "logits", TRITON_DTYPES)
    header.outputs[0].shape[:] = [1, 2, 2]
    header.outputs[0].datatype = "INT64"
    with pytest.raises(WireFormatError, match="INT64"):
        output_tensor(header, contents, "logits", TRITON_DTYPES)
