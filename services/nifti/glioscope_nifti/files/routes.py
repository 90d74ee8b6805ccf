from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from glioscope_common.records.access import AuditAction
from glioscope_nifti.deps import audit, require_writer, verified_identity
from glioscope_nifti.files.schemas import FileList, StoredFile
from glioscope_nifti.files.service import NiftiFileService

router = APIRouter(prefix="/api/nifti/files", tags=["files"], dependencies=[Depends(verified_identity)])


def get_service(request: Request) -> NiftiFileService:
    return request.app.state.file_service


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


@router.get("", response_model=FileList, summary="List dataset files, optionally for one subject/session")
def list_files(
    subject: str | None = Query(None, description="subject label without 'sub-'"),
    session: str | None = Query(None, description="session label without 'ses-'"),
    service: NiftiFileService = Depends(get_service),
) -> FileList:
    return FileList.model_validate({"files": service.list(subject, session)})


@router.put(
    "/{path:path}",
    response_model=StoredFile,
    status_code=201,
    summary="Upload a .nii.gz (raw body) or a .json BIDS sidecar (JSON body) at a BIDS path (audited)",
    responses={200: {"model": StoredFile, "description": "replaced an existing file"}},
    dependencies=[Depends(require_writer)],
)
async def put_file(
    path: str, request: Request, response: Response, service: NiftiFileService = Depends(get_service)
) -> StoredFile:
    stored, replaced = await service.put(path, request.stream(), _content_length(request))
    await run_in_threadpool(audit, request, AuditAction.edited if replaced else AuditAction.created)
    if replaced:
        response.status_code = 200
    return StoredFile.model_validate(stored)


@router.get("/{path:path}", summary="Download a file (application/gzip or application/json)")
def get_file(path: str, service: NiftiFileService = Depends(get_service)) -> FileResponse:
    target, media_type = service.open(path)
    return FileResponse(target, media_type=media_type, filename=target.name)


@router.delete("/{path:path}", status_code=204, summary="Delete a file (and folders left empty; audited)",
               dependencies=[Depends(require_writer)])
def delete_file(path: str, request: Request, service: NiftiFileService = Depends(get_service)) -> Response:
    service.delete(path)
    audit(request, AuditAction.deleted)
    return Response(status_code=204)
