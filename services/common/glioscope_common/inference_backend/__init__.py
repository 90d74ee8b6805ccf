"""Where the network runs: onnxruntime in-process (embedded default) or Triton over gRPC (production).

Both take a batch [N, C, P, P, P] float32 and return the model's output [N, L, P, P, P] (logits) as
float32; a model whose input and output tensors are float16 (half the bytes to move, e.g. to a
Triton across the network) gets and gives float16, converted here.
Chosen by `GLIOSCOPE_INFERENCE_URL`: "onnxruntime" or "grpc://host:8001". A Triton on the same host
(same IPC namespace, e.g. a sidecar sharing /dev/shm) can take the tensors through system shared
memory instead of the gRPC message (`GLIOSCOPE_TRITON_SHARED_MEMORY=system`).

The package: `protocol` (the InferenceBackend protocol), `onnxruntime_backend`, `triton_backend`
(the pooled gRPC connections and the call), `triton_shared_memory` (the /dev/shm regions) and
`factory` (make_backend, from the inference URL).
"""

from glioscope_common.inference_backend.factory import make_backend
from glioscope_common.inference_backend.onnxruntime_backend import OnnxRuntimeBackend
from glioscope_common.inference_backend.protocol import InferenceBackend
from glioscope_common.inference_backend.triton_backend import TRITON_DTYPES, TritonBackend
from glioscope_common.inference_backend.triton_shared_memory import SHARED_MEMORY_DIR, SHARED_MEMORY_MODES

__all__ = [
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "SHARED_MEMORY_DIR",
    "SHARED_MEMORY_MODES",
    "TRITON_DTYPES",
    "TritonBackend",
    "make_backend",
]
