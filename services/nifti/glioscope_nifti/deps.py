"""Request-scoped dependencies shared by the routers: the caller's verified identity and the audit trail."""

from __future__ import annotations

from fastapi import Request

from glioscope_common.audit_trail import AuditTrail
from glioscope_common.errors import Forbidden
from glioscope_common.internal_identity import InternalIdentity, request_identity
from glioscope_common.records.access import AuditAction
from glioscope_nifti.settings import Settings

AUDIENCE = "nifti"
# Files are written and deleted by the inference worker (role service) and admins; anyone the gateway
# vouches for may read (the gateway decides which study's mask a caller may see).
WRITING_ROLES = frozenset({"service", "admin"})


def verified_identity(request: Request) -> InternalIdentity:
    """The caller, from a token signed for this service (glioscope_common.internal_identity); 401 otherwise."""
    settings: Settings = request.app.state.settings
    return request_identity(request.state, settings.internal_key, request.headers.get("authorization"), AUDIENCE)


def require_writer(request: Request) -> InternalIdentity:
    who = verified_identity(request)
    if who.role not in WRITING_ROLES:
        raise Forbidden(f"the role {who.role!r} may not change the dataset")
    return who


def audit(request: Request, action: AuditAction) -> None:
    trail: AuditTrail = request.app.state.audit_trail
    trail.record(verified_identity(request), action, request_id=getattr(request.state, "request_id", None),
                 client_ip=request.client.host if request.client else None)
