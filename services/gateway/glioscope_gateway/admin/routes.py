from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from glioscope_common.errors import InvalidInput
from glioscope_common.records.access import AuditAction
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.auth.deps import require
from glioscope_gateway.auth.principal import ADMIN, Principal
from glioscope_gateway.auth.schemas import ApiKeyIn, ApiKeyOut, AuditEventOut, UserIn, UserOut
from glioscope_gateway.deps import Container, container

router = APIRouter(prefix="/api/admin", tags=["admin"])
admin_only = require(ADMIN)


@router.post("/users", status_code=201, response_model=UserOut, summary="Create a user")
def create_user(request: Request, body: UserIn, principal: Principal = Depends(admin_only),
                c: Container = Depends(container)) -> UserOut:
    request.state.audit = AuditNote(AuditAction.administered)
    return UserOut.model_validate(c.auth.create_user(body.username, body.password, body.role, body.projects))


@router.get("/users", response_model=list[UserOut], summary="List users")
def list_users(principal: Principal = Depends(admin_only), c: Container = Depends(container)) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in c.auth.list_users()]


@router.post("/api-keys", status_code=201, response_model=ApiKeyOut, summary="Create a service API key (shown once)")
def create_api_key(request: Request, body: ApiKeyIn, principal: Principal = Depends(admin_only),
                   c: Container = Depends(container)) -> ApiKeyOut:
    request.state.audit = AuditNote(AuditAction.administered)
    key = c.auth.create_api_key(body.name, body.projects)
    return ApiKeyOut(id=key.id, name=key.name, key=key.key)


@router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke a service API key")
def revoke_api_key(request: Request, key_id: Annotated[str, Path(max_length=32)], principal: Principal = Depends(admin_only),
                   c: Container = Depends(container)) -> Response:
    request.state.audit = AuditNote(AuditAction.administered)
    c.auth.revoke_api_key(key_id)
    return Response(status_code=204)


AuditFilters = dict[str, object]


def _utc(name: str, value: datetime | None) -> datetime | None:
    """A filter's time in UTC; a time without a time zone is ambiguous and refused (400)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"`{name}` needs a time zone, e.g. 2026-12-03T10:00:00Z or 2026-12-03T11:00:00+01:00")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput(f"`{name}` is out of range") from exc


_TIME_HELP = "ISO 8601 with a time zone, e.g. 2026-12-03T10:00:00Z (a time without one is refused)"


def _filters(
    # Authorisation first: only admins learn whether their filters are valid.
    principal: Principal = Depends(admin_only),
    actor: Annotated[str | None, Query(max_length=64)] = None,
    study: Annotated[str | None, Query(max_length=64, description="StudyInstanceUID")] = None,
    action: AuditAction | None = None,
    since: Annotated[datetime | None, Query(description=_TIME_HELP)] = None,
    until: Annotated[datetime | None, Query(description=_TIME_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> AuditFilters:
    return {"actor": actor, "study_instance_uid": study, "action": action, "since": _utc("since", since),
            "until": _utc("until", until), "limit": limit, "offset": offset}


@router.get("/audit", response_model=list[AuditEventOut], summary="Search the audit log")
def audit(filters: AuditFilters = Depends(_filters), principal: Principal = Depends(admin_only),
          c: Container = Depends(container)) -> list[AuditEventOut]:
    return [AuditEventOut.model_validate(e) for e in c.audit.query(**filters)]  # type: ignore[arg-type]


@router.get("/audit/export", response_class=StreamingResponse, summary="The audit log as CSV (same filters)",
            responses={200: {"content": {"text/csv": {}}, "description": "CSV with a header row"}})
def audit_export(filters: AuditFilters = Depends(_filters), principal: Principal = Depends(admin_only),
                 c: Container = Depends(container)) -> StreamingResponse:
    events = c.audit.query(**filters)  # type: ignore[arg-type]
    return StreamingResponse(c.audit.to_csv(events), media_type="text/csv",
                             headers={"content-disposition": 'attachment; filename="audit.csv"'})
