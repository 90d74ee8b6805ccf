"""App factory: `uvicorn glioscope_nifti.main:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from glioscope_common.audit_trail import AuditTrail
from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.http import install_common
from glioscope_common.logs import configure_logging
from glioscope_nifti.convert.routes import router as convert_router
from glioscope_nifti.convert.service import ConvertService
from glioscope_nifti.files.repository import DatasetRepository
from glioscope_nifti.files.routes import router as files_router
from glioscope_nifti.files.service import NiftiFileService
from glioscope_nifti.settings import Settings

SERVICE = "nifti"


def _version() -> str:
    try:
        return version("glioscope-nifti")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_json)
    repository = DatasetRepository(settings.nifti_root, _version())
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        repository.ensure_dataset()
        yield
        engine.dispose()

    app = FastAPI(
        title="Glioscope NIfTI service",
        version=_version(),
        description="A BIDS dataset of brain MRI (raw sequences and Glioscope segmentations) and DICOM -> NIfTI.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    files = NiftiFileService(settings, repository)
    app.state.file_service = files
    app.state.audit_trail = AuditTrail(make_session_factory(engine), SERVICE)
    app.state.convert_service = ConvertService(settings, files)
    install_common(app, SERVICE)
    app.include_router(files_router)
    app.include_router(convert_router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> dict[str, object]:
        try:
            repository.check_writable()
        except OSError as exc:
            raise UpstreamUnavailable(f"dataset root not writable: {exc.strerror or exc}") from exc
        converter = "dcm2niix" if app.state.convert_service.dcm2niix_path() else "pydicom"
        return {"status": "ready", "nifti_root": "writable", "converter": converter}

    return app
