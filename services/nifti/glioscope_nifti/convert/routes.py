from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from glioscope_common.records.access import AuditAction
from glioscope_nifti.convert.service import ConvertService
from glioscope_nifti.deps import audit, require_writer
from glioscope_nifti.files.schemas import ConvertedSeries

router = APIRouter(prefix="/api/nifti", tags=["convert"], dependencies=[Depends(require_writer)])


def get_service(request: Request) -> ConvertService:
    return request.app.state.convert_service


@router.post(
    "/convert",
    response_model=ConvertedSeries,
    status_code=201,
    summary="Convert one DICOM series (zip body) to NIfTI at sub-<subject>/ses-<session>/anat/",
)
async def convert(
    request: Request,
    subject: str = Query(..., description="subject label ([a-zA-Z0-9]+)"),
    session: str = Query(..., description="session label ([a-zA-Z0-9]+)"),
    suffix: str = Query("T1w", description="T1w, T2w or FLAIR"),
    ce: str | None = Query(None, description="contrast agent entity, e.g. 'gadolinium' for T1c"),
    acq: str | None = Query(None),
    run: str | None = Query(None),
    service: ConvertService = Depends(get_service),
) -> ConvertedSeries:
    length = request.headers.get("content-length")
    entities = {k: v for k, v in {"acq": acq, "ce": ce, "run": run}.items() if v}
    result = await service.convert(
        subject, session, suffix, entities, request.stream(), int(length) if length and length.isdigit() else None
    )
    await run_in_threadpool(audit, request, AuditAction.created)
    return ConvertedSeries.model_validate(result)
