"""The backend named by the inference URL (`GLIOSCOPE_INFERENCE_URL`)."""

from __future__ import annotations

from pathlib import Path

from glioscope_common.inference_backend.onnxruntime_backend import OnnxRuntimeBackend
from glioscope_common.inference_backend.protocol import InferenceBackend
from glioscope_common.inference_backend.triton_backend import TritonBackend
from glioscope_common.model_metadata import ModelMetadata


def make_backend(
    settings_inference_url: str,
    model_dir: Path,
    metadata: ModelMetadata,
    *,
    threads: int | None = None,
    timeout_s: float = 60,
    requests_in_flight: int = 2,
    triton_shared_memory: str = "none",
    triton_version: str = "",
) -> InferenceBackend:
    """"onnxruntime" -> OnnxRuntimeBackend(model_dir / metadata.onnx_file) with `threads` (None or 0:
    onnxruntime's choice); "grpc://host:port" -> Triton serving the model named after `model_dir`'s
    folder (the Triton model repository layout), version `triton_version` (the version folder; "":
    Triton's choice), `requests_in_flight` patches at once, tensors through gRPC or
    (`triton_shared_memory="system"`) shared memory."""
    url = settings_inference_url.strip()
    if url.lower() in ("onnxruntime", "ort", "local", ""):
        return OnnxRuntimeBackend(
            Path(model_dir) / metadata.onnx_file, threads or None,
            input_name=metadata.input_name, output_name=metadata.output_name,
        )
    if url.startswith("grpc://") or "://" not in url:
        return TritonBackend(
            url, Path(model_dir).name, triton_version, timeout_s=timeout_s,
            input_name=metadata.input_name, output_name=metadata.output_name,
            requests_in_flight=requests_in_flight, shared_memory=triton_shared_memory,
            output_channels=len(metadata.labels) + 1,
        )
    raise ValueError(f"unsupported inference URL {url!r}: use 'onnxruntime' or 'grpc://host:8001'")
