from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from glioscope_reporting.deps import require_service_token
from glioscope_reporting.reports.schemas import ReportList, ReportOut
from glioscope_reporting.reports.service import ReportService

router = APIRouter(prefix="/api/reports", tags=["reports"], dependencies=[Depends(require_service_token)])


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
    response: Response,
    payload: str = Form(..., description="JSON: {study_instance_uid, job_id, patient, study, measurements, model}"),
    key_images: list[UploadFile] | None = File(None, description="PNG files named axial.png, coronal.png, sagittal.png"),
    service: ReportService = Depends(get_service),
) -> ReportOut:
    limit = service.settings.max_key_image_bytes
    images = [(upload.filename or "", await upload.read(limit + 1)) for upload in key_images or []]
    report, created = await run_in_threadpool(service.create, payload, images)
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
