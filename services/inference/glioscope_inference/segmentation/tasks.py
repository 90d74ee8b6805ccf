"""Celery task: load the job by ID and call the service. Names follow <service>.<domain>.<verb>."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.inference_backend import InferenceBackend, make_backend
from glioscope_common.metrics import count_job, observe_job
from glioscope_common.model_metadata import UnknownModelVersion, resolve_model_version
from glioscope_common.records.models import JobKind
from glioscope_inference.brain_extraction import BrainExtractor, load_brain_extractor
from glioscope_inference.segmentation.clients import NiftiClient, ReportingClient
from glioscope_inference.segmentation.repository import JobRepository
from glioscope_inference.segmentation.service import ProgressSink, SegmentationService
from glioscope_inference.settings import InferenceSettings
from glioscope_inference.worker import app

logger = logging.getLogger("glioscope.inference.tasks")


def progress_publisher(settings: InferenceSettings) -> ProgressSink | None:
    """Mirror progress to Redis (key and pub/sub) when it is configured; the job row stays the truth."""
    if not settings.redis_url:
        return None
    import redis

    client = redis.Redis.from_url(settings.redis_url)

    def publish(job_id: str, stage: str, fraction: float) -> None:
        message = json.dumps({"job_id": job_id, "stage": stage, "progress": round(fraction, 4)})
        client.set(f"glioscope:job:{job_id}:progress", message, ex=settings.progress_ttl_s)
        client.publish(f"glioscope:jobs:{job_id}", message)

    return publish


# Every service built in this process (one per model version asked for), for _close_backend.
_BUILT: list[SegmentationService] = []


@functools.cache
def _service(version: str = "") -> tuple[SegmentationService, JobRepository, InferenceSettings]:
    """The service running `version` ("0.3.1") of the model; "": the default (GLIOSCOPE_MODEL_VERSION,
    else the newest). Built once per version and process. An unknown version: UnknownModelVersion."""
    settings = InferenceSettings()
    sessions = make_session_factory(make_engine(settings.database_url))
    jobs = JobRepository(sessions)
    model_dir = settings.model_repository / settings.model_name
    model = resolve_model_version(model_dir, version or settings.model_version)
    metadata = model.metadata
    token = settings.internal_key

    @functools.cache
    def backend() -> InferenceBackend:
        return make_backend(
            settings.inference_url, model_dir, metadata,
            threads=settings.inference_threads, requests_in_flight=settings.triton_requests_in_flight,
            triton_shared_memory=settings.triton_shared_memory, triton_version=model.folder,
        )

    def brain_extractor() -> BrainExtractor | None:
        # loaded once per worker process (load_brain_extractor is cached); onnxruntime here even when
        # the tumour model is on Triton
        if not settings.brain_model_name:
            return None
        on_triton = settings.brain_model_on_triton and settings.inference_url.startswith("grpc://")
        return load_brain_extractor(settings.model_repository / settings.brain_model_name, settings.inference_threads,
                                    settings.inference_url if on_triton else None)

    service = SegmentationService(
        jobs,
        HttpDicomWeb(settings.dicomweb_url, auth=settings.orthanc_auth),
        NiftiClient(settings.nifti_url, token),
        ReportingClient(settings.reporting_url, token),
        backend,
        metadata,
        progress_publisher(settings),
        brain_extractor_factory=brain_extractor,
    )
    _BUILT.append(service)
    return service, jobs, settings


@worker_process_shutdown.connect
def _close_backend(**_: object) -> None:
    """Give Triton back this process's shared memory regions (they would stay mapped in Triton)."""
    for service in _BUILT:
        factory = service._backend_factory  # functools.cache'd in _service: built at most once
        built = getattr(factory, "cache_info", None)
        if built is not None and built().currsize:
            close = getattr(factory(), "close", None)
            if close is not None:
                close()


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    try:
        _service()[0].warm_up()
    except Exception:  # a cold start is slower, not wrong
        logger.warning("worker warm-up failed; the first job pays for it", exc_info=True)


def run_with_retries(
    task: Task, job_id: str, run: Callable[[str], str], jobs: JobRepository, settings: InferenceSettings, what: str
) -> str:
    """Run a job; an unavailable upstream sends it back to the queue with exponential backoff, then
    fails it; anything else fails it at once. Shared by the segmentation and the edit tasks."""
    try:
        return run(job_id)
    except UpstreamUnavailable as exc:
        if task.request.retries >= settings.max_upstream_retries:
            jobs.fail(job_id, f"{exc.detail} (gave up after {task.request.retries} retries; retry the job later)")
            count_job("failed")
            return "failed"
        jobs.back_to_queue(job_id, f"waiting to retry: {exc.detail}")
        count_job("retried")
        countdown = min(settings.retry_backoff_s * 2**task.request.retries, settings.retry_backoff_max_s)
        raise task.retry(exc=exc, countdown=countdown, max_retries=settings.max_upstream_retries) from exc
    except Exception:
        logger.exception(f"{what} job crashed", extra={"job_id": job_id})
        jobs.fail(job_id, f"internal error during {what}; see the worker logs")
        count_job("failed")
        return "failed"


@app.task(name="inference.segmentation.run", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_segmentation(self: Task, job_id: str) -> str:
    service, jobs, settings = _service()
    job = jobs.load(job_id)
    if job is not None and job.kind == JobKind.edit:
        # The gateway's watcher re-enqueues every stale job with this task: hand edits to their own code.
        from glioscope_inference.editing.tasks import execute_edit

        return execute_edit(self, job_id)
    if job is not None and job.model_version and job.model_version != service.metadata.version:
        try:  # the version the job asked for (POST /api/studies/{uid}/jobs {"model_version": ...})
            service = _service(job.model_version)[0]
        except UnknownModelVersion as exc:
            jobs.fail(job_id, exc.detail)
            count_job("failed")
            return "failed"

    def run(job_id: str) -> str:
        outcome = service.run(job_id)
        observe_job(jobs.load(job_id), settings.inference_url)  # final state, stage timings, upload-to-result
        return outcome

    return run_with_retries(self, job_id, run, jobs, settings, "segmentation")
