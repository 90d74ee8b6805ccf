"""`/dicom-web/...` on the gateway's origin, forwarded to Orthanc's DICOMweb root for the viewer.

Callers restricted to some projects see only those projects' studies: QIDO-RS answers are filtered
by StudyInstanceUID, and WADO-RS / metadata of any other study answers 404. Researchers get no raw
DICOM (they use the de-identified export)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import InvalidInput, NotFound, UpstreamUnavailable
from glioscope_common.records.access import AuditAction
from glioscope_gateway.auth.deps import current_principal
from glioscope_gateway.auth.errors import Forbidden
from glioscope_gateway.auth.principal import IDENTIFIED, WRITE, Principal
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.deps import Container, container

router = APIRouter(prefix="/dicom-web", tags=["dicomweb"])

FORWARDED_REQUEST_HEADERS = ("accept", "content-type", "range")
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-length", "content-range", "etag", "last-modified")
QIDO_ROOTS = ("studies", "series", "instances")
STUDY_UID_TAG = "0020000D"


def _study_uid(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    return parts[1][:64] if len(parts) >= 2 and parts[0] == "studies" else None


def _audit(request: Request) -> None:
    """Listed before authentication so that refused requests are recorded too (one per caller, study, minutes)."""
    action = AuditAction.uploaded if request.method == "POST" else AuditAction.viewed
    request.state.audit = AuditNote(action, _study_uid(request.path_params.get("path", "")), dedupe=True)


@router.api_route("/{path:path}", methods=["GET", "POST"], summary="DICOMweb (QIDO-RS, WADO-RS, STOW-RS) proxy",
                  dependencies=[Depends(_audit)])
async def proxy(path: str, request: Request, principal: Principal = Depends(current_principal),
                c: Container = Depends(container)) -> Response:
    parts = [p for p in path.split("/") if p]
    study_uid = _study_uid(path)
    if principal.role not in IDENTIFIED:
        raise Forbidden("the researcher role has no raw DICOM access; use POST /api/studies/{uid}/export")
    if ".." in path.split("/") or "\\" in path:
        raise InvalidInput("invalid DICOMweb path")
    if request.method == "POST":
        if principal.role not in WRITE:
            raise Forbidden(f"the {principal.role.value} role may not store DICOM")
        if path.rstrip("/") not in ("studies",) and not path.startswith("studies/"):
            raise InvalidInput("only STOW-RS accepts POST")
    restricted = principal.projects is not None
    allowed: set[str] | None = None
    if restricted:
        allowed = await run_in_threadpool(c.studies.visible_study_uids, list(principal.projects or ()))
        if study_uid is not None and study_uid not in allowed:
            known = await run_in_threadpool(_registered, c, study_uid)
            # GET of a study outside the caller's projects: as if it did not exist. A STOW-RS of a
            # new study is allowed (the watcher registers it in the default project).
            if request.method == "GET" or known:
                raise NotFound("no such study")
        elif study_uid is None and request.method == "GET" and (not parts or parts[0] not in QIDO_ROOTS):
            raise NotFound("no such DICOMweb resource")
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
    if allowed is not None and study_uid is None and request.method == "GET":
        # A QIDO-RS search across studies: keep the caller's studies only.
        try:
            body = await upstream.aread()
        finally:
            await upstream.aclose()
        response_headers.pop("content-length", None)
        if upstream.status_code != 200:
            return Response(body, status_code=upstream.status_code, headers=response_headers)
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise UpstreamUnavailable("the PACS answered a search with something other than JSON") from exc
        kept = [item for item in items if _study_uid_of(item) in allowed]
        return Response(json.dumps(kept), status_code=200, media_type=response_headers.pop("content-type", "application/dicom+json"),
                        headers=response_headers)
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=response_headers,
        background=BackgroundTask(upstream.aclose),
    )


def _registered(c: Container, study_uid: str) -> bool:
    try:
        c.studies.get(study_uid)
        return True
    except NotFound:
        return False


def _study_uid_of(item: object) -> str | None:
    if not isinstance(item, dict):
        return None
    element = item.get(STUDY_UID_TAG) or {}
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]) if values else None
