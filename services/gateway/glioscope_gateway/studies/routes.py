from __future__ import annotations

import io
from typing import Annotated

import pydicom
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, UpstreamUnavailable
from glioscope_common.records.models import Study, StudyStatus
from glioscope_gateway.deps import Container, container
from glioscope_gateway.studies.schemas import JobOut, SequenceOverrides, StudyOut, UploadResult

router = APIRouter(prefix="/api/studies", tags=["studies"])

ACCEPTED_TYPES = ("application/dicom", "application/zip", "application/x-zip-compressed", "application/octet-stream", "")


def study_out(study: Study) -> StudyOut:
    out = StudyOut.model_validate(study)
    if study.jobs:
        out.latest_job = JobOut.model_validate(study.jobs[-1])
    return out


async def _read_files(files: list[UploadFile], limit: int) -> list[tuple[str, bytes]]:
    total = 0
    out = []
    for upload in files:
        content_type = (upload.content_type or "").split(";")[0].strip().lower()
        if content_type not in ACCEPTED_TYPES:
            raise UnsupportedMediaType(f"unsupported content type {content_type!r}: send DICOM files or a zip")
        content = await upload.read()
        total += len(content)
        if total > limit:
            raise PayloadTooLarge(f"the upload exceeds {limit} bytes")
        out.append((upload.filename or "", content))
    return out


@router.post("", status_code=201, response_model=UploadResult, summary="Upload a study (DICOM files or a zip)")
async def upload_study(
    request: Request,
    files: Annotated[list[UploadFile], File(description="DICOM files and/or zip archives of one study")],
    c: Container = Depends(container),
) -> Response:
    content = await _read_files(files, c.settings.max_upload_bytes)
    outcome = await run_in_threadpool(c.studies.ingest_upload, content)
    result = UploadResult(
        study=study_out(outcome.study),
        job=JobOut.model_validate(outcome.job) if outcome.job else None,
        created=outcome.created,
        instances_received=outcome.instances_received,
    )
    return Response(result.model_dump_json(), status_code=201 if outcome.created else 200, media_type="application/json")


@router.get("", response_model=list[StudyOut], summary="The worklist")
def list_studies(
    status: StudyStatus | None = None,
    search: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    c: Container = Depends(container),
) -> list[StudyOut]:
    return [study_out(s) for s in c.studies.list(status, search, limit, offset)]


@router.get("/{study_instance_uid}", response_model=StudyOut)
def get_study(study_instance_uid: str, c: Container = Depends(container)) -> StudyOut:
    return study_out(c.studies.get(study_instance_uid))


@router.put("/{study_instance_uid}/sequences", response_model=StudyOut, summary="Set which series is T1/T1c/T2/FLAIR")
def set_sequences(study_instance_uid: str, body: SequenceOverrides, c: Container = Depends(container)) -> StudyOut:
    return study_out(c.studies.set_sequence_overrides(study_instance_uid, body.overrides))


@router.post("/{study_instance_uid}/jobs", status_code=201, response_model=JobOut, summary="Segment the study (again)")
def create_job(study_instance_uid: str, c: Container = Depends(container)) -> JobOut:
    return JobOut.model_validate(c.studies.create_job(study_instance_uid))


def _finished_job(c: Container, study_instance_uid: str):  # type: ignore[no-untyped-def]
    study = c.studies.get(study_instance_uid)
    done = [j for j in study.jobs if j.state.value == "succeeded"]
    if not done:
        latest = study.jobs[-1] if study.jobs else None
        state = latest.state.value if latest else "none"
        raise NotFound(f"no finished segmentation for this study (latest job: {state})")
    return done[-1]


@router.get("/{study_instance_uid}/measurements", summary="Tumour measurements of the latest finished job")
def get_measurements(study_instance_uid: str, c: Container = Depends(container)) -> dict:  # type: ignore[type-arg]
    return _finished_job(c, study_instance_uid).measurements or {}


@router.get("/{study_instance_uid}/segmentation", response_class=Response, summary="The DICOM-SEG (application/dicom)")
async def get_segmentation(study_instance_uid: str, c: Container = Depends(container)) -> Response:
    job = _finished_job(c, study_instance_uid)
    dataset = await run_in_threadpool(
        c.dicomweb.retrieve_instance, study_instance_uid, job.seg_series_instance_uid, job.seg_sop_instance_uid
    )
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return Response(
        buffer.getvalue(),
        media_type="application/dicom",
        headers={"content-disposition": 'attachment; filename="segmentation.dcm"'},
    )


async def _proxy_service(c: Container, url: str, media_type: str, filename: str) -> Response:
    try:
        response = await c.services_http.get(url)
    except Exception as exc:
        raise UpstreamUnavailable("a Glioscope service is unreachable") from exc
    if response.status_code == 404:
        raise NotFound("the result file is missing")
    if response.status_code != 200:
        raise UpstreamUnavailable(f"a Glioscope service answered {response.status_code}")
    return Response(
        response.content, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/{study_instance_uid}/mask.nii.gz", response_class=Response, summary="The label mask as NIfTI")
async def get_mask(study_instance_uid: str, c: Container = Depends(container)) -> Response:
    job = _finished_job(c, study_instance_uid)
    path = job.nifti_paths.get("mask")
    if not path:
        raise NotFound("no mask was stored for this job")
    return await _proxy_service(c, f"{c.settings.nifti_url}/api/nifti/files/{path}", "application/gzip", "mask.nii.gz")


@router.get("/{study_instance_uid}/report.pdf", response_class=Response, summary="The report as PDF")
async def get_report_pdf(study_instance_uid: str, c: Container = Depends(container)) -> Response:
    job = _finished_job(c, study_instance_uid)
    if not job.report_id:
        raise NotFound("no report was drafted for this job")
    return await _proxy_service(
        c, f"{c.settings.reporting_url}/api/reports/{job.report_id}/pdf", "application/pdf", "report.pdf"
    )


@router.get("/{study_instance_uid}/report", summary="The report's sections and fields (JSON)")
async def get_report(study_instance_uid: str, c: Container = Depends(container)) -> Response:
    job = _finished_job(c, study_instance_uid)
    if not job.report_id:
        raise NotFound("no report was drafted for this job")
    response = await _proxy_service(c, f"{c.settings.reporting_url}/api/reports/{job.report_id}", "application/json", "report.json")
    del response.headers["content-disposition"]
    return response
