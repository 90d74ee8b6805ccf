"""Objects the routes need, built once per app in main.create_app and stored on app.state."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.dicomweb.protocol import DicomWeb
from glioscope_gateway.audit.service import AuditLog
from glioscope_gateway.auth.ratelimit import Limiter
from glioscope_gateway.auth.service import AuthService
from glioscope_gateway.routing.service import ResultRouter
from glioscope_gateway.settings import GatewaySettings
from glioscope_gateway.studies.admission import UploadAdmission
from glioscope_gateway.studies.ingest_pool import UploadIngest
from glioscope_gateway.studies.service import StudyService


@dataclass
class Container:
    settings: GatewaySettings
    sessions: sessionmaker[Session]
    studies: StudyService
    ingest: UploadIngest  # uploads: validated and stored in worker processes
    admission: UploadAdmission  # upload bytes held at once, decided before a body is read
    dicomweb: DicomWeb
    orthanc_http: httpx.AsyncClient  # raw proxy to Orthanc's DICOMweb for the viewer
    services_http: httpx.AsyncClient  # reporting and nifti; each request signs the caller (internal_calls.py)
    auth: AuthService
    audit: AuditLog
    signin_limiter: Limiter  # sign-in and refresh, per client address (client_address.py)
    signin_account_limiter: Limiter  # failed sign-ins per account (normalised username)
    upload_limiter: Limiter
    orthanc: OrthancRest
    result_router: ResultRouter | None = None  # GLIOSCOPE_DESTINATIONS set (glioscope_gateway.routing)


def container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]
