"""`/dicom-web/...` on the gateway's origin, forwarded to Orthanc's DICOMweb root for the viewer.

Callers restricted to some projects see only those projects' studies: QIDO-RS answers are filtered
by StudyInstanceUID, and WADO-RS / metadata of any other study answers 404. Researchers get no raw
DICOM (they use the de-identified export). Only the DICOMweb routes in `paths.py` are forwarded,
rebuilt from their parsed segments; a restricted caller's STOW-RS is checked instance by instance
(`stow.py`)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import InvalidInput, NotFound, PayloadTooLarge, UpstreamUnavailable
from glioscope_common.records.access import AuditAction
from glioscope_gateway.auth.deps import current_principal
from glioscope_gateway.auth.errors import Forbidden
from glioscope_gateway.auth.principal import IDENTIFIED, WRITE, Principal
from glioscope_gateway.client_address import request_scheme
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.deps import Container, container
from glioscope_gateway.dicomweb_proxy.paths import DicomwebRoute, NotARoute, parse_route, stow_route
from glioscope_gateway.dicomweb_proxy.stow import parse_stow

logger = logging.getLogger("glioscope.gateway.dicomweb")
router = APIRouter(prefix="/dicom-web", tags=["dicomweb"])

FORWARDED_REQUEST_HEADERS = ("accept", "content-type", "range")
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-length", "content-range", "etag", "last-modified")
STUDY_UID_TAG = "0020000D"
PUBLIC_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def _route(request: Request) -> DicomwebRoute | None:
    try:
        return parse_route(request.path_params.get("path", ""), request.method)
    except NotARoute:
        return None


def _audit(request: Request) -> None:
    """Listed before authentication so that refused requests are recorded too (one per caller, study, minutes).
    A path that is not a DICOMweb route is recorded as a view of no study."""
    route = _route(request)
    stow = route is not None and route.is_stow
    # Every STOW-RS is recorded (no deduplication); a restricted caller's names its study once checked.
    request.state.audit = AuditNote(AuditAction.uploaded if stow else AuditAction.viewed,
                                    route.study_instance_uid if route else None, dedupe=not stow)


@router.api_route("/{path:path}", methods=["GET", "POST"], summary="DICOMweb (QIDO-RS, WADO-RS, STOW-RS) proxy",
                  dependencies=[Depends(_audit)])
async def proxy(path: str, request: Request, principal: Principal = Depends(current_principal),
                c: Container = Depends(container)) -> Response:
    if principal.role not in IDENTIFIED:
        raise Forbidden("the researcher role has no raw DICOM access; use POST /api/studies/{uid}/export")
    route = _route(request)
    if route is None:
        raise NotFound("no such DICOMweb resource")
    study_uid = route.study_instance_uid
    content: AsyncIterator[bytes] | bytes | None = None
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST_HEADERS}
    if route.is_stow and principal.role not in WRITE:
        raise Forbidden(f"the {principal.role.value} role may not store DICOM")
    allowed: set[str] | None = None
    if principal.projects is not None:
        allowed = await run_in_threadpool(c.studies.visible_study_uids, list(principal.projects))
        if study_uid is not None and study_uid not in allowed and not route.is_stow:
            raise NotFound("no such study")  # outside the caller's projects: as if it did not exist
    params = list(request.query_params.multi_items())
    if any(name.startswith("_") for name, _ in params):
        # Orthanc reads `_method=DELETE` on any request as that method: no such parameter is DICOMweb.
        raise InvalidInput("unsupported DICOMweb query parameter")
    page: tuple[int, int | None] | None = None
    if allowed is not None and study_uid is None and not route.is_stow:
        # A restricted search across studies is filtered here, so the page is cut here too, after the
        # filter: Orthanc's limit/offset would count other projects' studies.
        page, params = _page(params)
    if route.is_stow:
        content = request.stream()
        if allowed is not None:
            target, content, headers["content-type"] = await _checked_stow(request, c, route, allowed)
            # Stored to /studies/{uid}: Orthanc then checks every part against that study with its own
            # DICOM parser, so no difference between pydicom's reading and DCMTK's can redirect a part.
            route = stow_route(target)
            request.state.audit.study_instance_uid = target
    public_host = request.headers.get("host", "")
    if PUBLIC_HOST.fullmatch(public_host):
        # Orthanc writes BulkDataURI / RetrieveURL from this (RFC 7239): links in metadata then point
        # at the gateway's /dicom-web, which has the same paths, not at the PACS behind it.
        headers["forwarded"] = f"host={public_host};proto={request_scheme(request)}"
    url = f"{c.settings.dicomweb_url.rstrip('/')}/{route.path}"
    # A GET is sent again once if the connection fails (a pooled keep-alive connection the PACS has
    # just closed fails the first request sent on it); a STOW-RS body is sent once.
    attempts = 2 if request.method == "GET" else 1
    for attempt in range(1, attempts + 1):
        upstream_request = c.orthanc_http.build_request(
            request.method, url, params=params, headers=headers, content=content,
        )
        try:
            upstream = await c.orthanc_http.send(upstream_request, stream=True)
            break
        except httpx.TransportError as exc:
            logger.warning("DICOMweb request to the PACS failed (%s, attempt %d of %d)", type(exc).__name__,
                           attempt, attempts)
            if attempt == attempts:
                raise UpstreamUnavailable("the PACS is unreachable") from exc
    if upstream.status_code in (401, 403):
        # Orthanc refused the gateway itself, not the caller: a configuration error, not a session to renew.
        await upstream.aclose()
        logger.error("the PACS answered %d to the gateway: check GLIOSCOPE_ORTHANC_USERNAME / _PASSWORD",
                     upstream.status_code)
        raise UpstreamUnavailable("the PACS refused the gateway's credentials "
                                  "(GLIOSCOPE_ORTHANC_USERNAME / GLIOSCOPE_ORTHANC_PASSWORD)")
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
        if page is not None:
            offset, limit = page
            kept = kept[offset:] if limit is None else kept[offset:offset + limit]
        return Response(json.dumps(kept), status_code=200, media_type=response_headers.pop("content-type", "application/dicom+json"),
                        headers=response_headers)
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=response_headers,
        background=BackgroundTask(upstream.aclose),
    )


async def _checked_stow(request: Request, c: Container, route: DicomwebRoute,
                        allowed: set[str]) -> tuple[str, bytes, str]:
    """A restricted caller's STOW-RS: one study per request, which must be one of the caller's studies or
    a study neither a project nor the PACS has yet (a new one). Returns the study and the body, re-encoded
    from the checked parts, that the PACS receives."""
    limit = c.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a STOW-RS body may not exceed {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"a STOW-RS body may not exceed {limit} bytes")
    stow = await run_in_threadpool(parse_stow, bytes(body), request.headers.get("content-type", ""))
    targets = stow.study_instance_uids
    if route.study_instance_uid is not None and targets != {route.study_instance_uid}:
        raise InvalidInput("every instance of a STOW-RS to /studies/{uid} must belong to that study")
    if len(targets) != 1:
        raise InvalidInput("a STOW-RS request may hold the instances of one study; send each study separately")
    (target,) = targets
    if target not in allowed:
        # Another project's study, or one in the PACS that no project holds yet (still arriving, or
        # never registered): as if it did not exist.
        if await run_in_threadpool(_registered, c, target) or await run_in_threadpool(c.orthanc.find_study, target):
            raise NotFound("no such study")
    body, content_type = stow.encode()
    return target, body, content_type


def _page(params: list[tuple[str, str]]) -> tuple[tuple[int, int | None], list[tuple[str, str]]]:
    """(offset, limit) of a QIDO-RS request, and its other parameters."""
    values = {name.lower(): value for name, value in params if name.lower() in ("offset", "limit")}
    try:
        offset = int(values.get("offset", "0"))
        limit = int(values["limit"]) if "limit" in values else None
    except ValueError as exc:
        raise InvalidInput("offset and limit must be integers") from exc
    if offset < 0 or (limit is not None and limit < 0):
        raise InvalidInput("offset and limit may not be negative")
    return (offset, limit), [(n, v) for n, v in params if n.lower() not in ("offset", "limit")]


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
