"""FastAPI dependencies: who is calling (Bearer JWT or X-API-Key) and whether their role may do this."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from glioscope_common.errors import Unauthorized
from glioscope_common.records.access import AuditAction, Role
from glioscope_gateway.audit.service import AuditNote
from glioscope_gateway.auth.errors import Forbidden
from glioscope_gateway.auth.principal import Principal
from glioscope_gateway.deps import Container, container

bearer_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False)


def authenticate(c: Container, api_key: str | None, token: str | None) -> Principal:
    if api_key:
        return c.auth.principal_from_api_key(api_key)
    if token:
        return c.auth.principal_from_bearer(token)
    raise Unauthorized("not authenticated: send 'Authorization: Bearer <token>' or 'X-API-Key'")


def principal_from_headers(c: Container, request: Request) -> Principal:
    """The caller, read from the headers as the security schemes below read them; for a route that
    must know it before its body is parsed (FastAPI parses the body before it solves dependencies)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return authenticate(c, request.headers.get("x-api-key"), token.strip() if scheme.lower() == "bearer" else None)


def current_principal(
    request: Request,
    token: str | None = Depends(bearer_scheme),
    api_key: str | None = Depends(api_key_scheme),
    c: Container = Depends(container),
) -> Principal:
    principal = authenticate(c, api_key, token)
    request.state.principal = principal
    return principal


def require(roles: Iterable[Role]) -> Callable[..., Principal]:
    allowed = frozenset(roles)

    def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"the {principal.role.value} role may not do this")
        return principal

    return dependency


def audit(request: Request, action: AuditAction, study_instance_uid: str | None = None, dedupe: bool = False) -> None:
    """Mark this request for the audit log; the middleware writes it with the response's outcome."""
    request.state.audit = AuditNote(action, study_instance_uid, dedupe)


def audited(action: AuditAction, dedupe: bool = False) -> Callable[[Request], None]:
    """A route dependency (listed before the auth one) so that refused requests are recorded too."""

    def dependency(request: Request) -> None:
        request.state.audit = AuditNote(action, request.path_params.get("study_instance_uid"), dedupe)

    return dependency
