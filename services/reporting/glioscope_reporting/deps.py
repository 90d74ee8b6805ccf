"""Request-scoped dependencies shared by the routers: the caller's verified identity and the audit trail."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from glioscope_common.audit_trail import AuditTrail
from glioscope_common.errors import Forbidden
from glioscope_common.internal_identity import InternalIdentity, request_identity
from glioscope_common.records.access import AuditAction
from glioscope_reporting.settings import Settings

AUDIENCE = "reporting"
DRAFTING_ROLES = frozenset({"service"})  # the worker drafts reports


def verified_identity(request: Request) -> InternalIdentity:
    """The caller, from a token signed for this service (glioscope_common.internal_identity); 401 otherwise."""
    settings: Settings = request.app.state.settings
    return request_identity(request.state, settings.internal_key, request.headers.get("authorization"), AUDIENCE)


def identity(request: Request) -> "Identity":
    from glioscope_reporting.reports.service import Identity

    who = verified_identity(request)
    return Identity(user=who.subject, role=who.role)


READING_ROLES = frozenset({"admin", "radiologist", "clinician", "service"})  # reports are identified data
EDITING_ROLES = frozenset({"admin", "radiologist"})
SCREENSHOT_ROLES = frozenset({"admin", "radiologist", "clinician"})
EXPORT_ROLES = frozenset({"admin", "radiologist", "service"})


def require_role(roles: frozenset[str], what: str) -> Callable[[Request], InternalIdentity]:
    """A dependency that refuses (403) callers whose verified role is not in `roles`."""

    def check(request: Request) -> InternalIdentity:
        who = verified_identity(request)
        if who.role not in roles:
            raise Forbidden(f"the role {who.role!r} may not {what}")
        return who

    return check


require_drafting_role = require_role(DRAFTING_ROLES, "draft reports (the inference worker does)")
require_reading_role = require_role(READING_ROLES, "read identified reports")


def audit(request: Request, action: AuditAction, study_instance_uid: str | None, outcome: str = "ok") -> None:
    trail: AuditTrail = request.app.state.audit_trail
    trail.record(verified_identity(request), action, study_instance_uid=study_instance_uid, outcome=outcome,
                 request_id=getattr(request.state, "request_id", None),
                 client_ip=request.client.host if request.client else None)
