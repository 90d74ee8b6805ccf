from __future__ import annotations

from glioscope_common.settings import CommonSettings


class InferenceSettings(CommonSettings):
    """Worker settings (env prefix GLIOSCOPE_); the URLs come from CommonSettings."""

    # Threads for onnxruntime in-process; 0 lets onnxruntime choose.
    inference_threads: int = 0
    # Retries of a job whose upstream (PACS, Triton, NIfTI, reporting) is unavailable, with backoff.
    max_upstream_retries: int = 5
    retry_backoff_s: float = 5.0
    retry_backoff_max_s: float = 120.0
    # Seconds a progress snapshot lives in Redis (Postgres holds the truth).
    progress_ttl_s: int = 3600
