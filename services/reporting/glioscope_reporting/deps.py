"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from glioscope_common.http import check_bearer
from glioscope_reporting.settings import Settings


def require_service_token(request: Request) -> None:
    settings: Settings = request.app.state.settings
    check_bearer(request.headers.get("authorization"), settings.service_token.get_secret_value())


def identity(request: Request) -> "Identity":
    """The end user, from X-Glioscope-User / X-Glioscope-Role. These headers are set by the gateway after it
    authenticated the user; they are trusted only because every route also requires the service token
    (require_service_token), which only the gateway and the other services hold."""
    from glioscope_reporting.reports.service import Identity

    user = (request.headers.get("x-glioscope-user") or "").strip() or None
    role = (request.headers.get("x-glioscope-role") or "").strip().lower() or None
    return Identity(user=user[:128] if user else None, role=role[:32] if role else None)
