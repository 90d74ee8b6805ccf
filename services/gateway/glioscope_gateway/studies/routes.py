from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import pydicom
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.routing import APIRoute
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType, UpstreamUnavailable
from glioscope_common.records.access import AuditAction
from glioscope_common.records.models import Study, StudyStatus
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.auth.deps import audited, principal_from_headers, require
from glioscope_gateway.auth.errors import Forbidden
from glioscope_gateway.auth.principal import EXPORT, IDENTIFIED, READ, WRITE, Principal
from glioscope_gateway.auth.service import PROJECT
from glioscope_gateway.deps import Container, container
from glioscope_gateway.internal_calls import identity_headers
from glioscope_gateway.models.routes import checked_model_version
from glioscope_gateway.segmentations.routes import segmentation_versions
from glioscope_gateway.segmentations.service import SegmentationVersions, Version
from glioscope_gateway.studies.admission import LengthRequired, UploadAdmission, declared_length
from glioscope_gateway.studies.export import export_deidentified
from glioscope_gateway.studies.schemas import JobIn, JobOut, SequenceOverrides, StudyOut, UploadResult

router = APIRouter(prefix="/api/studies", tags=["studies"])

ACCEPTED_TYPES = ("application/dicom", "application/zip", "application/x-zip-compressed", "application/octet-stream", "")
DEIDENTIFIED_FIELDS = ("patient_id", "patient_name", "patient_birth_date", "accession_number")


def study_out(study: Study, principal: Principal | None = None) -> StudyOut:
    out = StudyOut.model_validate(study)
    jobs = study.model_runs  # edit jobs: GET .../segmentation/versions
    if jobs:
        out.latest_job = JobOut.model_validate(jobs[-1])
    if principal is not None and principal.deidentified:
        for field in DEIDENTIFIED_FIELDS:
            setattr(out, field, "")
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


def upload_project(principal: Principal, requested: str | None, default: str) -> str:
    """The project an upload goes to: the one asked for (if the uploader belongs to it), else their first."""
    if requested:
        if not PROJECT.match(requested):
            raise InvalidInput("project names are 1-64 letters, digits, '.', '_' or '-'")
        if not principal.can_see(requested):
            raise Forbidden("you do not belong to this project")
        return requested
    if principal.projects:
        return principal.projects[0]
    return default


class AdmittedUploadRoute(APIRoute):
    """The upload route: the caller is authenticated from the headers (so that nobody unknown can
    take the budget) and the upload admitted by `app.state.container.admission`, both before the
    body is parsed; the route's own dependencies run again as usual afterwards."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def admitted(request: Request) -> Response:
            c = request.app.state.container
            request.state.audit = AuditNote(AuditAction.uploaded, None, False)  # refusals are audited too
            principal = await run_in_threadpool(principal_from_headers, c, request)
            request.state.principal = principal
            if principal.role not in WRITE:
                raise Forbidden(f"the {principal.role.value} role may not do this")
            declared = declared_length(request)
            if declared is None:  # a chunked body could not be bounded before it is buffered
                raise LengthRequired("send the upload with a Content-Length (not chunked)")
            admission: UploadAdmission = c.admission
            with admission.admit(declared):
                c.upload_limiter.hit(principal.subject)  # admitted: a 503 and its retry cost no token
                return await handler(request)

        return admitted


async def upload_study(
    request: Request,
    files: Annotated[list[UploadFile], File(description="DICOM files and/or zip archives of one study")],
    project: Annotated[str | None, Form(description="a project the uploader belongs to (default: their first)")] = None,
    principal: Principal = Depends(require(WRITE)),
    c: Container = Depends(container),
) -> Response:
    target = upload_project(principal, project, c.settings.default_project)
    content = await _read_files(files, c.settings.max_upload_bytes)
    outcome = await c.ingest.ingest(content, target, principal.projects)
    request.state.audit.study_instance_uid = outcome.study.study_instance_uid
    result = UploadResult(
        study=study_out(outcome.study, principal),
        job=JobOut.model_validate(outcome.job) if outcome.job else None,
        created=outcome.created,
        instances_received=outcome.instances_received,
    )
    return Response(result.model_dump_json(), status_code=201 if outcome.created else 200, media_type="application/json")


# Not a decorator: the upload route has its own route class (studies/admission.py), which
# authenticates the caller and admits the upload by size before the body is read.
router.add_api_route(
    "",
    upload_study,
    methods=["POST"],
    status_code=201,
    response_model=UploadResult,
    summary="Upload a study (DICOM files or a zip) to the uploader's project",
    description="413 above `max_upload_bytes`; 503 with Retry-After while the gateway holds its upload budget.",
    dependencies=[Depends(audited(AuditAction.uploaded))],
    route_class_override=AdmittedUploadRoute,
)


@router.get("", response_model=list[StudyOut], summary="The worklist (the caller's projects)",
            dependencies=[Depends(audited(AuditAction.viewed))])
def list_studies(
    status: StudyStatus | None = None,
    search: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    principal: Principal = Depends(require(READ)),
    c: Container = Depends(container),
) -> list[StudyOut]:
    studies = c.studies.list(status, search, limit, offset, principal.projects, not principal.deidentified)
    return [study_out(s, principal) for s in studies]


@router.get("/{study_instance_uid}", response_model=StudyOut, dependencies=[Depends(audited(AuditAction.viewed))])
def get_study(study_instance_uid: str, principal: Principal = Depends(require(READ)),
              c: Container = Depends(container)) -> StudyOut:
    return study_out(c.studies.get(study_instance_uid, principal.projects), principal)


@router.put("/{study_instance_uid}/sequences", response_model=StudyOut, summary="Set which series is T1/T1c/T2/FLAIR",
            dependencies=[Depends(audited(AuditAction.edited))])
def set_sequences(study_instance_uid: str, body: SequenceOverrides, principal: Principal = Depends(require(WRITE)),
                  c: Container = Depends(container)) -> StudyOut:
    return study_out(c.studies.set_sequence_overrides(study_instance_uid, body.overrides, principal.projects), principal)


@router.post("/{study_instance_uid}/jobs", status_code=201, response_model=JobOut, summary="Segment the study (again)",
             dependencies=[Depends(audited(AuditAction.edited))])
def create_job(study_instance_uid: str, body: JobIn | None = None, principal: Principal = Depends(require(WRITE)),
               c: Container = Depends(container)) -> JobOut:
    version = checked_model_version(c.settings, body.model_version if body else "")
    return JobOut.model_validate(c.studies.create_job(study_instance_uid, principal.projects, model_version=version))


def _finished_job(c: Container, study_instance_uid: str, principal: Principal):  # type: ignore[no-untyped-def]
    study = c.studies.get(study_instance_uid, principal.projects)
    jobs = study.model_runs
    done = [j for j in jobs if j.state.value == "succeeded"]
    if not done:
        latest = jobs[-1] if jobs else None
        state = latest.state.value if latest else "none"
        raise NotFound(f"no finished segmentation for this study (latest job: {state})")
    return done[-1]


def _version(c: Container, versions: SegmentationVersions, study_instance_uid: str, principal: Principal,
             number: int | None = None) -> Version:
    """A segmentation version with results: `number`, or the latest (an edited one if any)."""
    return versions.resolve(_finished_job(c, study_instance_uid, principal), number)


@router.get("/{study_instance_uid}/measurements",
            summary="Tumour measurements of the latest segmentation version (recomputed for an edited mask)",
            dependencies=[Depends(audited(AuditAction.viewed))])
def get_measurements(study_instance_uid: str, principal: Principal = Depends(require(READ)),
                     c: Container = Depends(container),
                     versions: SegmentationVersions = Depends(segmentation_versions)) -> dict:  # type: ignore[type-arg]
    return _version(c, versions, study_instance_uid, principal).measurements or {}


@router.get("/{study_instance_uid}/segmentation", response_class=Response,
            summary="The DICOM-SEG (application/dicom) of the latest segmentation version, or of ?version=N",
            dependencies=[Depends(audited(AuditAction.downloaded))])
async def get_segmentation(study_instance_uid: str,
                           version: Annotated[int | None, Query(ge=1, le=1_000_000, description="default: the latest")] = None,
                           principal: Principal = Depends(require(IDENTIFIED)),
                           c: Container = Depends(container),
                           versions: SegmentationVersions = Depends(segmentation_versions)) -> Response:
    found = await run_in_threadpool(_version, c, versions, study_instance_uid, principal, version)
    dataset = await run_in_threadpool(
        c.dicomweb.retrieve_instance, study_instance_uid, found.seg_series_instance_uid, found.seg_sop_instance_uid
    )
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return Response(
        buffer.getvalue(),
        media_type="application/dicom",
        headers={"content-disposition": 'attachment; filename="segmentation.dcm"'},
    )


async def _proxy_service(c: Container, principal: Principal, audience: Literal["reporting", "nifti"], url: str,
                         media_type: str, filename: str) -> Response:
    try:
        response = await c.services_http.get(url, headers=identity_headers(c.settings, principal, audience))
    except Exception as exc:
        raise UpstreamUnavailable("a Glioscope service is unreachable") from exc
    if response.status_code == 404:
        raise NotFound("the result file is missing")
    if response.status_code != 200:
        raise UpstreamUnavailable(f"a Glioscope service answered {response.status_code}")
    return Response(
        response.content, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


@router.get("/{study_instance_uid}/mask.nii.gz", response_class=Response,
            summary="The label mask of the latest segmentation version as NIfTI",
            dependencies=[Depends(audited(AuditAction.downloaded))])
async def get_mask(study_instance_uid: str, principal: Principal = Depends(require(READ)),
                   c: Container = Depends(container),
                   versions: SegmentationVersions = Depends(segmentation_versions)) -> Response:
    found = await run_in_threadpool(_version, c, versions, study_instance_uid, principal)
    path = found.nifti_path
    if not path:
        raise NotFound("no mask was stored for this job")
    return await _proxy_service(c, principal, "nifti", f"{c.settings.nifti_url}/api/nifti/files/{path}", "application/gzip", "mask.nii.gz")


@router.get("/{study_instance_uid}/brain-mask.nii.gz", response_class=Response,
            summary="The brain mask (deepbet, T1c grid, BIDS desc-brain_mask) of the latest model run as NIfTI; "
                    "404 when no brain extraction ran (skull-stripped input)",
            dependencies=[Depends(audited(AuditAction.downloaded))])
async def get_brain_mask(study_instance_uid: str, principal: Principal = Depends(require(READ)),
                         c: Container = Depends(container)) -> Response:
    job = await run_in_threadpool(_finished_job, c, study_instance_uid, principal)
    path = job.nifti_paths.get("brain_mask")
    if not path:
        raise NotFound("no brain extraction ran for this study (its images were skull-stripped)")
    return await _proxy_service(c, principal, "nifti", f"{c.settings.nifti_url}/api/nifti/files/{path}", "application/gzip",
                                "brain-mask.nii.gz")


@router.get("/{study_instance_uid}/report.pdf", response_class=Response, summary="The report as PDF",
            dependencies=[Depends(audited(AuditAction.downloaded))])
async def get_report_pdf(study_instance_uid: str, principal: Principal = Depends(require(IDENTIFIED)),
                         c: Container = Depends(container)) -> Response:
    job = await run_in_threadpool(_finished_job, c, study_instance_uid, principal)
    if not job.report_id:
        raise NotFound("no report was drafted for this job")
    return await _proxy_service(
        c, principal, "reporting", f"{c.settings.reporting_url}/api/reports/{job.report_id}/pdf", "application/pdf", "report.pdf"
    )


@router.get("/{study_instance_uid}/report", summary="The report's sections and fields (JSON)",
            dependencies=[Depends(audited(AuditAction.viewed))])
async def get_report(study_instance_uid: str, principal: Principal = Depends(require(IDENTIFIED)),
                     c: Container = Depends(container)) -> Response:
    job = await run_in_threadpool(_finished_job, c, study_instance_uid, principal)
    if not job.report_id:
        raise NotFound("no report was drafted for this job")
    response = await _proxy_service(c, principal, "reporting", f"{c.settings.reporting_url}/api/reports/{job.report_id}", "application/json", "report.json")
    del response.headers["content-disposition"]
    return response


@router.post(
    "/{study_instance_uid}/export",
    response_class=Response,
    summary="The study de-identified (DICOM PS3.15 Basic Profile) as a zip, for research",
    responses={200: {"content": {"application/zip": {}}, "description": "a zip of the de-identified DICOM files"}},
    dependencies=[Depends(audited(AuditAction.exported))],
)
async def export_study(study_instance_uid: str, principal: Principal = Depends(require(EXPORT)),
                       c: Container = Depends(container)) -> Response:
    study = await run_in_threadpool(c.studies.get, study_instance_uid, principal.projects)
    roles = {s.series_instance_uid: s.role for s in study.series if s.role}  # the exported SeriesDescription
    content = await run_in_threadpool(export_deidentified, c.orthanc, study_instance_uid, roles)
    return Response(content, media_type="application/zip",
                    headers={"content-disposition": 'attachment; filename="study-deidentified.zip"'})
