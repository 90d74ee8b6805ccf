from __future__ import annotations

from pathlib import Path

from glioscope_common.settings import CommonSettings


class GatewaySettings(CommonSettings):
    """Gateway settings (env prefix GLIOSCOPE_). URLs of the other services come from CommonSettings."""

    max_upload_bytes: int = 4 * 1024**3
    max_files_per_upload: int = 5000
    max_zip_members: int = 5000
    max_zip_uncompressed_bytes: int = 4 * 1024**3
    max_zip_ratio: float = 100.0  # uncompressed / compressed, per member and overall: beyond it is a zip bomb
    # Queue the segmentation task goes to ("cpu" with in-process onnxruntime, "gpu" next to Triton).
    job_queue: str = "cpu"
    # Watch Orthanc's change feed so that studies sent by STOW-RS or C-STORE directly get a job.
    # Run it on exactly one gateway replica.
    orthanc_watcher: bool = True
    orthanc_watch_interval_s: float = 2.0
    # A job still queued this long after creation is enqueued again (the broker may have lost it).
    requeue_after_s: float = 300.0
    frontend_dist: Path | None = None
    # Run the records' migrations at start (the embedded configuration); in Kubernetes a Job does it.
    auto_migrate: bool = True
