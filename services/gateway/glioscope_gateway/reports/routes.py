"""Report editing, sign-off and export, forwarded to the reporting service.

The gateway authenticates the caller and tells the reporting service who it is with a token signed
for this one request (glioscope_common.internal_identity); nothing the client sends is forwarded
as identity. Status codes and error bodies pass through unchanged.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from glioscope_common.errors import Conflict, NotFound, UpstreamUnavailable
from glioscope_common.records.access import AuditAction
from glioscope_common.records.models import JobState
from glioscope_gateway.auth.deps import audited, require
from glioscope_gateway.auth.principal import IDENTIFIED, Principal, Role
from glioscope_gateway.deps import Container, container
from glioscope_gateway.internal_calls import identity_headers

router = APIRouter(prefix="/api/studies/{study_instance_uid}/report", tags=["reports"])

EDIT = frozenset({Role.admin, Role.radiologist})
SIGN = frozenset({Role.radiologist})
SCREENSHOT = frozenset({Role.admin, Role.radiologist, Role.clinician})
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-disposition")


def _report_id(c: Container, study_instance_uid: str, principal: Principal) -> str:
    study = c.studies.get(study_instance_uid, principal.projects)
    done = [j for j in study.jobs if j.state == JobState.succeeded and j.report_id]
    if not done:
        raise NotFound("this study has no report yet")
    return str(done[-1].report_id)


async def _forward(
    request: Request, c: Container, principal: Principal, study_instance_uid: str, method: str, path: str,
    params: dict[str, str] | None = None,
) -> Response:
    report_id = await run_in_threadpool(_report_id, c, study_instance_uid, principal)
    headers = identity_headers(c.settings, principal, "reporting")
    content_type = request.headers.get("content-type")
    if content_type:
        headers["content-type"] = content_type
    body = await request.body() if method in ("POST", "PUT") else None
    try:
        upstream = await c.services_http.request(
            method, f"{c.settings.reporting_url}/api/reports/{report_id}{path}",
            params=[*((k, v) for k, v in request.query_params.multi_items() if k not in (params or {})),
                    *(params or {}).items()],  # the gateway's own parameters replace a client's
            content=body, headers=headers,
        )
    except Exception as exc:
        raise UpstreamUnavailable("the reporting service is unreachable") from exc
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
    return Response(upstream.content, status_code=upstream.status_code, headers=kept)


Section = Literal["findings", "impression", "diagnosis", "recommendations"]


@router.put("/sections/{section}", summary="Edit a section (a new version)", dependencies=[Depends(audited(AuditAction.edited))])
async def edit_section(study_instance_uid: str, section: Section, request: Request,
                       principal: Principal = Depends(require(EDIT)), c: Container = Depends(container)) -> Response:
    return await _forward(request, c, principal, study_instance_uid, "PUT", f"/sections/{section}")


@router.get("/versions", summary="The report's versions", dependencies=[Depends(audited(AuditAction.viewed))])
async def versions(study_instance_uid: str, request: Request,
                   principal: Principal = Depends(require(IDENTIFIED)), c: Container = Depends(container)) -> Response:
    return await _forward(request, c, principal, study_instance_uid, "GET", "/versions")


@router.get("/diff", summary="Differences between two versions (?from=&to=)", dependencies=[Depends(audited(AuditAction.viewed))])
async def diff(study_instance_uid: str, request: Request,
               principal: Principal = Depends(require(IDENTIFIED)), c: Container = Depends(container)) -> Response:
    return await _forward(request, c, principal, study_instance_uid, "GET", "/diff")


@router.post("/sign", summary="Sign the report (radiologist); it is locked afterwards", dependencies=[Depends(audited(AuditAction.signed))])
async def sign(study_instance_uid: str, request: Request,
               principal: Principal = Depends(require(SIGN)), c: Container = Depends(container)) -> Response:
    latest = await run_in_threadpool(_latest_segmentation_version, request, c, study_instance_uid, principal)
    return await _forward(request, c, principal, study_instance_uid, "POST", "/sign",
                          params={"latest_segmentation_version": str(latest)})


def _latest_segmentation_version(request: Request, c: Container, study_instance_uid: str, principal: Principal) -> int:
    """The newest segmentation version with a result, for the reporting service to refuse a stale report; a
    version still being saved refuses the sign-off here (409): the report will follow it in a moment."""
    versions = request.app.state.segmentation_versions.list(study_instance_uid, principal.projects)
    saving = [v.version for v in versions if v.state in (JobState.queued, JobState.running)]
    if saving:
        raise Conflict(f"segmentation version {max(saving)} is being saved: sign once the report follows it")
    done = [v.version for v in versions if v.state == JobState.succeeded]
    return max(done, default=1)


@router.post("/addenda", summary="Add an addendum to a signed report (radiologist)", dependencies=[Depends(audited(AuditAction.edited))])
async def addendum(study_instance_uid: str, request: Request,
                   principal: Principal = Depends(require(SIGN)), c: Container = Depends(container)) -> Response:
    return await _forward(request, c, principal, study_instance_uid, "POST", "/addenda")


@router.post("/screenshots", summary="Attach viewer screenshots (PNG, multipart `screenshots`)", dependencies=[Depends(audited(AuditAction.edited))])
async def screenshots(study_instance_uid: str, request: Request,
                      principal: Principal = Depends(require(SCREENSHOT)), c: Container = Depends(container)) -> Response:
    return await _forward(request, c, principal, study_instance_uid, "POST", "/screenshots")


@router.post("/export", summary="Store the report's PDF and SR in the PACS", dependencies=[Depends(audited(AuditAction.exported))])
async def export(study_instance_uid: str, request: Request,
                 principal: Principal = Depends(require(EDIT)), c: Container = Depends(container)) -> Response:
    return await _forward(request, c, principal, study_instance_uid, "POST", "/export")
