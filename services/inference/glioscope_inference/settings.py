from __future__ import annotations

from typing import Literal

from pydantic import Field

from glioscope_common.settings import CommonSettings


class InferenceSettings(CommonSettings):
    """Worker settings (env prefix GLIOSCOPE_); the URLs come from CommonSettings."""

    # The model version a job runs unless it asks for one (the metadata version, e.g. "0.4.0", of a
    # version folder of model_repository/<model_name>/); empty: the newest. docs/model-versions.md.
    model_version: str = ""
    # Threads for onnxruntime in-process; 0 lets onnxruntime choose.
    inference_threads: int = Field(0, ge=0)
    # Brain extraction (deepbet, onnxruntime in this process) for studies that are not skull-stripped:
    # the folder under model_repository; empty, or a missing folder, turns it off (a warning instead).
    brain_model_name: str = "glioscope_brainmask"
    # True: the brain networks run on the Triton of GLIOSCOPE_INFERENCE_URL (grpc://…), which must load the
    # models named in the folder's metadata.json `triton_models`; False: onnxruntime in this process.
    brain_model_on_triton: bool = False
    # Patches one job keeps in flight to Triton, one per request (Triton's dynamic batcher merges them).
    triton_requests_in_flight: int = Field(2, ge=1, le=64)
    # "system": tensors to Triton through POSIX shared memory instead of the gRPC message; only for a
    # Triton on the same host with the same /dev/shm (a sidecar, the one-machine benchmark).
    triton_shared_memory: Literal["none", "system"] = "none"
    # Retries of a job whose upstream (PACS, Triton, NIfTI, reporting) is unavailable, with backoff.
    max_upstream_retries: int = 5
    retry_backoff_s: float = 5.0
    retry_backoff_max_s: float = 120.0
    # Seconds a progress snapshot lives in Redis (Postgres holds the truth).
    progress_ttl_s: int = 3600
