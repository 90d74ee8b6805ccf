"""`/dicom-web/...` on the gateway's origin, forwarded to Orthanc's DICOMweb root for the viewer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from glioscope_common.errors import InvalidInput, UpstreamUnavailable
from glioscope_gateway.deps import Container, container

router = APIRouter(prefix="/dicom-web", tags=["dicomweb"])

FORWARDED_REQUEST_HEADERS = ("accept", "content-type", "range")
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-length", "content-range", "etag", "last-modified")


@router.api_route("/{path:path}", methods=["GET", "POST"], summary="DICOMweb (QIDO-RS, WADO-RS, STOW-RS) proxy")
async def proxy(path: str, request: Request, c: Container = Depends(container)) -> StreamingResponse:
    if ".." in path.split("/") or "\\" in path:
        raise InvalidInput("invalid DICOMweb path")
    if request.method == "POST" and path.rstrip("/") not in ("studies",) and not path.startswith("studies/"):
        raise InvalidInput("only STOW-RS accepts POST")
    url = f"{c.settings.dicomweb_url.rstrip('/')}/{path}"
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
    upstream_request = c.orthanc_http.build_request(
        request.method,
        url,
        params=list(request.query_params.multi_items()),
        headers=headers,
        content=request.stream() if request.method == "POST" else None,
    )
    try:
        upstream = await c.orthanc_http.send(upstream_request, stream=True)
    except Exception as exc:
        raise UpstreamUnavailable("the PACS is unreachable") from exc
    response_headers = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=response_headers,
        background=BackgroundTask(upstream.aclose),
    )
