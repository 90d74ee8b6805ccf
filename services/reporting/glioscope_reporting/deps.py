"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from glioscope_common.http import check_bearer
from glioscope_reporting.settings import Settings


def require_service_token(request: Request) -> None:
    settings: Settings = request.app.state.settings
    check_bearer(request.headers.get("authorization"), settings.service_token.get_secret_value())
