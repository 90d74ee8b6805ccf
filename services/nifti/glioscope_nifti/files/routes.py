from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse

from glioscope_nifti.deps import require_service_token
from glioscope_nifti.files.schemas import FileList, StoredFile
from glioscope_nifti.files.service import NiftiFileService

router = APIRouter(prefix="/api/nifti/files", tags=["files"], dependencies=[Depends(require_service_token)])


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
    summary="Upload a .nii.gz (raw body) or a .json BIDS sidecar (JSON body) at a BIDS path",
    responses={200: {"model": StoredFile, "description": "replaced an existing file"}},
)
async def put_file(
    path: str, request: Request, response: Response, service: NiftiFileService = Depends(get_service)
) -> StoredFile:
    stored, replaced = await service.put(path, request.stream(), _content_length(request))
    if replaced:
        response.status_code = 200
    return StoredFile.model_validate(stored)


@router.get("/{path:path}", summary="Download a file (application/gzip or application/json)")
def get_file(path: str, service: NiftiFileService = Depends(get_service)) -> FileResponse:
    target, media_type = service.open(path)
    return FileResponse(target, media_type=media_type, filename=target.name)


@router.delete("/{path:path}", status_code=204, summary="Delete a file (and folders left empty)")
def delete_file(path: str, service: NiftiFileService = Depends(get_service)) -> Response:
    service.delete(path)
    return Response(status_code=204)
