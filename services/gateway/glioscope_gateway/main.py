"""The gateway app factory: `uvicorn glioscope_gateway.main:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dicomweb import HttpDicomWeb, OrthancRest
from glioscope_common.http import install_common
from glioscope_common.logs import configure_logging
from glioscope_common.records.migrate import migrate
from glioscope_gateway.deps import Container
from glioscope_gateway.dicomweb_proxy.routes import router as dicomweb_router
from glioscope_gateway.jobs.queue import CeleryJobQueue, JobQueue
from glioscope_gateway.jobs.routes import router as jobs_router
from glioscope_gateway.settings import GatewaySettings
from glioscope_gateway.studies.routes import router as studies_router
from glioscope_gateway.studies.service import StudyService
from glioscope_gateway.studies.upload import UploadLimits
from glioscope_gateway.watcher import OrthancWatcher


def create_app(settings: GatewaySettings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_json)
    if settings.auto_migrate:
        migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    dicomweb = HttpDicomWeb(settings.dicomweb_url)
    orthanc = OrthancRest(settings.orthanc_url)
    studies = StudyService(
        sessions,
        dicomweb,
        orthanc,
        queue or CeleryJobQueue(settings.broker_url, settings.job_queue),
        UploadLimits(
            max_files=settings.max_files_per_upload,
            max_zip_members=settings.max_zip_members,
            max_zip_uncompressed_bytes=settings.max_zip_uncompressed_bytes,
            max_zip_ratio=settings.max_zip_ratio,
        ),
        requeue_after_s=settings.requeue_after_s,
    )
    watcher = OrthancWatcher(sessions, orthanc, studies, settings.orthanc_watch_interval_s)
    token = settings.service_token.get_secret_value()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.container = Container(
            settings=settings,
            sessions=sessions,
            studies=studies,
            dicomweb=dicomweb,
            orthanc_http=httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5)),
            services_http=httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {token}"}),
        )
        if settings.orthanc_watcher:
            watcher.start()
        try:
            yield
        finally:
            watcher.stop()
            await app.state.container.orthanc_http.aclose()
            await app.state.container.services_http.aclose()
            engine.dispose()

    app = FastAPI(
        title="Glioscope gateway",
        version="0.1.0",
        description="Upload brain MRI studies, follow segmentation jobs, fetch DICOM-SEG, NIfTI and reports.",
        lifespan=lifespan,
    )
    install_common(app, "gateway")
    app.include_router(studies_router)
    app.include_router(jobs_router)
    app.include_router(dicomweb_router)
    app.state.watcher = watcher

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            with engine.connect() as connection:
                connection.execute(text("select 1"))
            checks["database"] = "ok"
        except Exception:
            checks["database"] = "unavailable"
        try:
            orthanc.statistics()
            checks["pacs"] = "ok"
        except Exception:
            checks["pacs"] = "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    if settings.frontend_dist and settings.frontend_dist.is_dir():
        app.mount("/", StaticFiles(directory=settings.frontend_dist, html=True), name="frontend")
    return app
