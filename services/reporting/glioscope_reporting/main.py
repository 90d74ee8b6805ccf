"""App factory: `uvicorn glioscope_reporting.main:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from glioscope_common.audit_trail import AuditTrail
from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.http import install_common
from glioscope_common.logs import configure_logging
from glioscope_reporting.migrate import migrate
from glioscope_reporting.reports.routes import router as reports_router
from glioscope_reporting.reports.service import ReportService
from glioscope_reporting.settings import Settings

SERVICE = "reporting"


def _version() -> str:
    try:
        return version("glioscope-reporting")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_json)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    service = ReportService(settings, sessions)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            migrate(settings.database_url)
        yield
        engine.dispose()

    app = FastAPI(
        title="Glioscope reporting service",
        version=_version(),
        description="Report drafts from tumour measurements, key images and PDF rendering.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.report_service = service
    app.state.audit_trail = AuditTrail(sessions, SERVICE)
    install_common(app, SERVICE)
    app.include_router(reports_router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> dict[str, str]:
        try:
            service.ping()
        except SQLAlchemyError as exc:
            raise UpstreamUnavailable(f"database not ready: {type(exc).__name__}") from exc
        return {"status": "ready", "database": "ok"}

    return app
