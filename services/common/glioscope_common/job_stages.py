"""The one vocabulary of a job's `stage` (the jobs table's column, the jobs API, the SSE events), in order.

The worker writes `fetch`, each pipeline stage (`glioscope_inference.pipeline.STAGES` is `PIPELINE_STAGES`),
`outputs` and `done`; a job waits as `queued` (new), `requeued` (the gateway's recovery sweep) or
`waiting-retry` (an upstream error, the task retries). The viewer's list is
frontend/src/features/jobs/stages.ts; tests/test_job_stages.py checks that it is this one and that every
stage the services write is in it."""

from __future__ import annotations

PIPELINE_STAGES = ("coregister", "resample", "normalise", "inference", "postprocess", "locate", "measure", "key_images")
WAITING_STAGES = ("queued", "requeued", "waiting-retry")
JOB_STAGES = (*WAITING_STAGES, "fetch", *PIPELINE_STAGES, "outputs", "done")

__all__ = ["JOB_STAGES", "PIPELINE_STAGES", "WAITING_STAGES"]
