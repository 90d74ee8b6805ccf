from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, File, Form, Path, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import Forbidden
from glioscope_common.records.access import AuditAction
from glioscope_reporting.deps import (
    EDITING_ROLES,
    EXPORT_ROLES,
    SCREENSHOT_ROLES,
    audit,
    identity,
    require_drafting_role,
    require_reading_role,
    require_role,
)
from glioscope_reporting.reports.schemas import (
    AddendumIn,
    DiffOut,
    ReportList,
    ReportOut,
    SectionEdit,
    SectionName,
    SignRequest,
    VersionList,
)
from glioscope_reporting.reports.service import Identity, ReportService

router = APIRouter(prefix="/api/reports", tags=["reports"], dependencies=[Depends(require_reading_role)])

IDENTITY_DOC = (
    " The caller is the identity in the bearer token the gateway signs for this request "
    "(glioscope_common.internal_identity); every change is audited here."
)


async def _write(request: Request, action: AuditAction, change: Callable[..., Any], *args: Any) -> Any:
    """Run a change and audit it (a refused sign-off or edit is audited as denied)."""
    try:
        result = await run_in_threadpool(change, *args)
    except Forbidden:
        await run_in_threadpool(audit, request, action, None, "denied")
        raise
    report = result[0] if isinstance(result, tuple) else result
    await run_in_threadpool(audit, request, action, report.study_instance_uid)
    return result


def get_service(request: Request) -> ReportService:
    return request.app.state.report_service


@router.post(
    "",
    response_model=ReportOut,
    status_code=201,
    summary="Create the draft report of a segmentation job (idempotent per study_instance_uid + job_id)",
    responses={200: {"model": ReportOut, "description": "the report already existed for this study and job"}},
)
async def create_report(
    request: Request,
    response: Response,
    payload: str = Form(..., description="JSON: {study_instance_uid, job_id, patient, study, measurements, model}"),
    key_images: list[UploadFile] | None = File(None, description="PNG files named axial.png, coronal.png, sagittal.png"),
    service: ReportService = Depends(get_service),
    _: object = Depends(require_drafting_role),
) -> ReportOut:
    limit = service.settings.max_key_image_bytes
    images = [(upload.filename or "", await upload.read(limit + 1)) for upload in key_images or []]
    report, created = await _write(request, AuditAction.created, service.create, payload, images)
    response.status_code = 201 if created else 200
    return report


@router.get("", response_model=ReportList, summary="List reports, newest first")
def list_reports(
    study_instance_uid: str | None = Query(None), service: ReportService = Depends(get_service)
) -> ReportList:
    return ReportList(reports=service.list(study_instance_uid))


@router.get("/{report_id}", response_model=ReportOut, summary="One report")
def get_report(report_id: str, service: ReportService = Depends(get_service)) -> ReportOut:
    return service.get(report_id)


@router.get(
    "/{report_id}/pdf",
    response_class=Response,
    summary="The report as PDF (rendered on demand)",
    responses={200: {"content": {"application/pdf": {}}}},
)
def get_report_pdf(report_id: str, service: ReportService = Depends(get_service)) -> Response:
    pdf = service.pdf(report_id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"content-disposition": f'inline; filename="report-{report_id}.pdf"', "cache-control": "no-store"},
    )


@router.put(
    "/{report_id}/sections/{section}",
    response_model=ReportOut,
    summary="Replace one section's text (a new version); 409 once the report is signed." + IDENTITY_DOC,
    dependencies=[Depends(require_role(EDITING_ROLES, "edit reports"))],
)
async def edit_section(
    request: Request,
    report_id: str,
    section: SectionName = Path(...),
    body: SectionEdit = Body(...),
    who: Identity = Depends(identity),
    service: ReportService = Depends(get_service),
) -> ReportOut:
    return await _write(request, AuditAction.edited, service.edit_section, report_id, section, body.text, who)


@router.get("/{report_id}/versions", response_model=VersionList, summary="Every version: sections, author, time, action")
def list_versions(report_id: str, service: ReportService = Depends(get_service)) -> VersionList:
    return VersionList(versions=service.versions(report_id))


@router.get("/{report_id}/diff", response_model=DiffOut, summary="Unified diff per section between two versions")
def diff_versions(
    report_id: str,
    from_version: int = Query(..., alias="from", ge=1),
    to_version: int = Query(..., alias="to", ge=1),
    service: ReportService = Depends(get_service),
) -> DiffOut:
    return service.diff(report_id, from_version, to_version)


@router.post(
    "/{report_id}/sign",
    response_model=ReportOut,
    summary="Sign and lock the report (role radiologist only: 403 otherwise; 409 if already signed); stores the "
    "PDF and SR in the PACS." + IDENTITY_DOC,
)
async def sign_report(
    request: Request,
    report_id: str,
    body: SignRequest | None = Body(None),
    latest_segmentation_version: int | None = Query(
        None, ge=1, description="the study's newest SEG version (the gateway sets it): a report describing an older "
        "one is not signed (409)"),
    who: Identity = Depends(identity),
    service: ReportService = Depends(get_service),
) -> ReportOut:
    return await _write(request, AuditAction.signed, service.sign, report_id, who, body.name if body else None,
                        latest_segmentation_version)


@router.put(
    "/{report_id}/segmentation",
    response_model=ReportOut,
    summary="The report follows a new SEG version (the worker, after an edit job): measurements and untouched "
    "sections are redrafted, sections a clinician wrote whose numbers changed are marked for review; "
    "409 for a signed report",
    dependencies=[Depends(require_drafting_role)],
)
async def refresh_segmentation(
    request: Request,
    report_id: str,
    payload: str = Form(..., description="JSON: {segmentation, measurements}"),
    key_images: list[UploadFile] | None = File(None, description="PNG files named axial.png, coronal.png, sagittal.png"),
    who: Identity = Depends(identity),
    service: ReportService = Depends(get_service),
) -> ReportOut:
    limit = service.settings.max_key_image_bytes
    images = [(upload.filename or "", await upload.read(limit + 1)) for upload in key_images or []]
    return await _write(request, AuditAction.edited, service.refresh_segmentation, report_id, payload, images, who)


@router.post(
    "/{report_id}/addenda",
    response_model=ReportOut,
    status_code=201,
    summary="Add an addendum to a signed report (radiologist; 409 before signing); stores the new version in the PACS."
    + IDENTITY_DOC,
)
async def add_addendum(
    request: Request, report_id: str, body: AddendumIn, who: Identity = Depends(identity), service: ReportService = Depends(get_service)
) -> ReportOut:
    return await _write(request, AuditAction.edited, service.add_addendum, report_id, body.text, who)


@router.post(
    "/{report_id}/screenshots",
    response_model=ReportOut,
    status_code=201,
    summary="Add viewer screenshots (multipart `screenshots`: PNG files; optional `captions`, one per file)",
    dependencies=[Depends(require_role(SCREENSHOT_ROLES, "attach screenshots"))],
)
async def add_screenshots(
    request: Request,
    report_id: str,
    screenshots: list[UploadFile] = File(..., description="PNG files"),
    captions: list[str] | None = Form(None, description="one caption per screenshot, in order"),
    who: Identity = Depends(identity),
    service: ReportService = Depends(get_service),
) -> ReportOut:
    limit = service.settings.max_key_image_bytes
    images = [(upload.filename or "", await upload.read(limit + 1)) for upload in screenshots]
    return await _write(request, AuditAction.edited, service.add_screenshots, report_id, images, captions or [], who)


@router.post(
    "/{report_id}/export",
    response_model=ReportOut,
    summary="Store the Encapsulated PDF and the TID 1500 SR of the current version in the PACS (idempotent per version)",
    dependencies=[Depends(require_role(EXPORT_ROLES, "export reports"))],
)
async def export_report(request: Request, report_id: str, service: ReportService = Depends(get_service)) -> ReportOut:
    return await _write(request, AuditAction.exported, service.export, report_id)
