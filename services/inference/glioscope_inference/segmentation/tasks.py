"""Celery task: load the job by ID and call the service. Names follow <service>.<domain>.<verb>."""

from __future__ import annotations

import functools
import json
import logging

from celery import Task

from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dicomweb import HttpDicomWeb
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.inference_backend import InferenceBackend, make_backend
from glioscope_common.metrics import count_job, observe_job
from glioscope_common.model_metadata import ModelMetadata
from glioscope_inference.segmentation.clients import NiftiClient, ReportingClient
from glioscope_inference.segmentation.repository import JobRepository
from glioscope_inference.segmentation.service import SegmentationService
from glioscope_inference.settings import InferenceSettings
from glioscope_inference.worker import app

logger = logging.getLogger("glioscope.inference.tasks")


@functools.cache
def _service() -> tuple[SegmentationService, JobRepository, InferenceSettings]:
    settings = InferenceSettings()
    sessions = make_session_factory(make_engine(settings.database_url))
    jobs = JobRepository(sessions)
    model_dir = settings.model_repository / settings.model_name
    metadata = ModelMetadata.load(model_dir)
    token = settings.service_token.get_secret_value()

    @functools.cache
    def backend() -> InferenceBackend:
        return make_backend(settings.inference_url, model_dir, metadata)

    publish = None
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(settings.redis_url)

        def publish(job_id: str, stage: str, fraction: float) -> None:
            message = json.dumps({"job_id": job_id, "stage": stage, "progress": round(fraction, 4)})
            client.set(f"glioscope:job:{job_id}:progress", message, ex=settings.progress_ttl_s)
            client.publish(f"glioscope:jobs:{job_id}", message)

    service = SegmentationService(
        jobs,
        HttpDicomWeb(settings.dicomweb_url),
        NiftiClient(settings.nifti_url, token),
        ReportingClient(settings.reporting_url, token),
        backend,
        metadata,
        publish,
    )
    return service, jobs, settings


@app.task(name="inference.segmentation.run", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_segmentation(self: Task, job_id: str) -> str:
    service, jobs, settings = _service()
    try:
        outcome = service.run(job_id)
        observe_job(jobs.load(job_id), settings.inference_url)  # final state, stage timings, upload-to-result
        return outcome
    except UpstreamUnavailable as exc:
        if self.request.retries >= settings.max_upstream_retries:
            jobs.fail(job_id, f"{exc.detail} (gave up after {self.request.retries} retries; retry the job later)")
            count_job("failed")
            return "failed"
        jobs.back_to_queue(job_id, f"waiting to retry: {exc.detail}")
        count_job("retried")
        countdown = min(settings.retry_backoff_s * 2**self.request.retries, settings.retry_backoff_max_s)
        raise self.retry(exc=exc, countdown=countdown, max_retries=settings.max_upstream_retries) from exc
    except Exception:
        logger.exception("segmentation job crashed", extra={"job_id": job_id})
        jobs.fail(job_id, "internal error during segmentation; see the worker logs")
        count_job("failed")
        return "failed"
