"""Celery task `inference.editing.run(job_id)`: save an edited mask as a new segmentation version."""

from __future__ import annotations

import functools

from celery import Task

from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.model_metadata import ModelMetadata, UnknownModelVersion
from glioscope_inference.editing.repository import VersionRepository
from glioscope_inference.editing.service import EditService
from glioscope_inference.segmentation.clients import NiftiClient, ReportingClient
from glioscope_inference.segmentation.repository import JobRepository
from glioscope_inference.segmentation.tasks import progress_publisher, run_with_retries
from glioscope_inference.settings import InferenceSettings
from glioscope_inference.worker import app


@functools.cache
def _service(model_version: str = "") -> tuple[EditService, JobRepository, InferenceSettings]:
    """The edit service for masks of `model_version` of the model ("": the worker's default)."""
    settings = InferenceSettings()
    sessions = make_session_factory(make_engine(settings.database_url))
    jobs = JobRepository(sessions)
    service = EditService(
        jobs,
        VersionRepository(sessions),
        HttpDicomWeb(settings.dicomweb_url, auth=settings.orthanc_auth),
        NiftiClient(settings.nifti_url, settings.internal_key),
        ModelMetadata.load(settings.model_repository / settings.model_name, model_version or settings.model_version),
        progress_publisher(settings),
        ReportingClient(settings.reporting_url, settings.internal_key),
    )
    return service, jobs, settings


def execute_edit(task: Task, job_id: str) -> str:
    service, jobs, settings = _service()
    wanted = service.model_version_of(job_id)
    if wanted and wanted != service.metadata.version:
        try:
            service = _service(wanted)[0]
        except UnknownModelVersion:  # no longer on this worker: the default's labels (the same three)
            pass
    return run_with_retries(task, job_id, service.run, jobs, settings, "the mask edit")


@app.task(name="inference.editing.run", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_edit(self: Task, job_id: str) -> str:
    return execute_edit(self, job_id)
