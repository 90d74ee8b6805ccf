"""The gateway app factory: `uvicorn glioscope_gateway.main:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import logging

import httpx
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.http import error_body, install_common
from glioscope_common.logs import configure_logging
from glioscope_common.metrics import register_gateway_collectors
from glioscope_common.tracing import instrument_celery, setup_tracing
from glioscope_common.records.migrate import migrate
from glioscope_gateway.admin.routes import router as admin_router
from glioscope_gateway.audit.service import AuditLog, AuditNote, outcome_of
from glioscope_gateway.auth.errors import RateLimited
from glioscope_gateway.auth.ratelimit import make_limiter
from glioscope_gateway.auth.routes import router as auth_router
from glioscope_gateway.auth.service import AuthService
from glioscope_gateway.auth.tokens import LocalTokens, OidcVerifier
from glioscope_gateway.client_address import parse_networks, request_client_address
from glioscope_gateway.deps import Container
from glioscope_gateway.dicomweb_proxy.routes import router as dicomweb_router
from glioscope_gateway.jobs.queue import CeleryJobQueue, JobQueue
from glioscope_gateway.jobs.routes import router as jobs_router
from glioscope_gateway.models.routes import router as models_router
from glioscope_gateway.reports.routes import router as reports_router
from glioscope_gateway.segmentations.routes import router as segmentations_router
from glioscope_gateway.segmentations.service import CeleryEditQueue, SegmentationVersions
from glioscope_gateway.settings import GatewaySettings
from glioscope_gateway.studies.routes import router as studies_router
from glioscope_gateway.studies.admission import UploadAdmission, UploadsBusy
from glioscope_gateway.studies.ingest_pool import UploadIngest, study_service
from glioscope_gateway.leader import export_leader_metric, make_leader_lock
from glioscope_gateway.routing.routes import router as deliveries_router
from glioscope_gateway.routing.service import ResultRouter, RoutingLoop
from glioscope_gateway.watcher import OrthancWatcher

logger = logging.getLogger("glioscope.gateway")

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
FRONTEND_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; font-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
API_PREFIXES = ("/api/", "/dicom-web/", "/healthz", "/readyz", "/metrics", "/openapi.json")
DOCS_PATHS = ("/docs", "/redoc")  # Swagger UI / ReDoc load their scripts from a CDN: no strict CSP there


def security_headers(path: str, production: bool) -> dict[str, str]:
    headers = {"x-frame-options": "DENY", "referrer-policy": "no-referrer", "x-content-type-options": "nosniff",
               "cross-origin-opener-policy": "same-origin"}
    if path.startswith(API_PREFIXES) or path == "/api":
        headers["content-security-policy"] = API_CSP
        headers["cache-control"] = "no-store"
    elif not path.startswith(DOCS_PATHS):
        headers["content-security-policy"] = FRONTEND_CSP
    if production:
        headers["strict-transport-security"] = "max-age=63072000; includeSubDomains"
    return headers


def create_app(settings: GatewaySettings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_json)
    if settings.auto_migrate:
        migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    dicomweb = HttpDicomWeb(settings.dicomweb_url, stow_concurrency=settings.stow_concurrency,
                            auth=settings.orthanc_auth)
    orthanc = OrthancRest(settings.orthanc_url, auth=settings.orthanc_auth)
    studies = study_service(settings, sessions, dicomweb, orthanc,
                            queue or CeleryJobQueue(settings.broker_url, settings.job_queue))
    # An injected queue (tests) cannot travel to another process: such uploads stay in this one.
    ingest = UploadIngest(settings, studies, settings.upload_processes if queue is None else 0, settings.upload_nice)
    # Every replica with the watcher on stands for election; only the leader's watcher works.
    leader = make_leader_lock(settings.database_url, settings.watcher_leader_poll_s, settings.watcher_leader_lease_s,
                              on_elected=lambda: watcher.wake()) if settings.orthanc_watcher else None
    watcher = OrthancWatcher(sessions, orthanc, studies, settings.orthanc_watch_interval_s, leader)
    # Results to the configured destinations: sent by the watcher's leader only (one sender).
    result_router = ResultRouter(
        sessions, orthanc, settings.destinations, retry_base_s=settings.routing_retry_base_s,
        retry_max_s=settings.routing_retry_max_s, max_attempts=settings.routing_max_attempts,
    ) if settings.destinations else None
    routing_loop = RoutingLoop(result_router, settings.routing_interval_s, lambda: leader.is_leader) \
        if result_router is not None and leader is not None else None
    oidc = None
    if settings.oidc_jwks_url:
        oidc = OidcVerifier(settings.oidc_jwks_url, settings.oidc_issuer, settings.oidc_audience,
                            settings.oidc_role_claim, settings.oidc_projects_claim, settings.oidc_username_claim,
                            settings.oidc_jwks_cache_s, settings.oidc_jwks_max_age_s)
    auth = AuthService(
        sessions,
        LocalTokens(settings.jwt_key, settings.access_token_ttl_s, settings.refresh_token_ttl_s),
        oidc,
        api_key_cache_s=settings.api_key_cache_s,
    )
    auth.bootstrap(
        settings.bootstrap_admin_username,
        settings.bootstrap_admin_password.get_secret_value() if settings.bootstrap_admin_password else None,
        settings.bootstrap_api_key.get_secret_value() if settings.bootstrap_api_key else None,
    )
    audit_log = AuditLog(sessions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.container = Container(
            settings=settings,
            sessions=sessions,
            studies=studies,
            ingest=ingest,
            admission=UploadAdmission(settings.max_upload_bytes, settings.upload_budget_bytes),
            dicomweb=dicomweb,
            orthanc_http=httpx.AsyncClient(timeout=httpx.Timeout(120, connect=5), auth=settings.orthanc_auth),
            services_http=httpx.AsyncClient(timeout=60),  # each request carries its own signed identity
            auth=auth,
            audit=audit_log,
            signin_limiter=make_limiter(settings.redis_url, "sign-in", settings.signin_rate_per_min, settings.signin_burst),
            signin_account_limiter=make_limiter(settings.redis_url, "sign-in-account", settings.signin_account_rate_per_min,
                                                settings.signin_account_burst),
            upload_limiter=make_limiter(settings.redis_url, "upload", settings.upload_rate_per_min, settings.upload_burst),
            orthanc=orthanc,
            result_router=result_router,
        )
        await ingest.ready()
        if leader is not None:
            watcher.start()
            leader.start()
            if routing_loop is not None:
                routing_loop.start()
            export_leader_metric(lambda: leader.is_leader)
        try:
            yield
        finally:
            watcher.stop()
            if routing_loop is not None:
                routing_loop.stop()
            if leader is not None:
                leader.stop()  # frees the lock: another replica leads within its poll interval
            audit_log.close()
            ingest.close()
            await app.state.container.orthanc_http.aclose()
            await app.state.container.services_http.aclose()
            engine.dispose()

    app = FastAPI(
        title="Glioscope gateway",
        version="0.1.0",
        description="Upload brain MRI studies, follow segmentation jobs, fetch DICOM-SEG, NIfTI and reports.",
        lifespan=lifespan,
    )
    production = settings.environment == "production"

    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)

    @app.middleware("http")
    async def _audit_and_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        try:
            response = await call_next(request)
        except Exception:
            # An unhandled error in a route is still an access to record (outcome `failed`): answer
            # the 500 here, as install_common would, and audit it below.
            logger.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
            response = JSONResponse(error_body("internal_error", "internal error", request), status_code=500)
        note: AuditNote | None = getattr(request.state, "audit", None)
        if note is not None:
            principal = getattr(request.state, "principal", None)
            try:
                await audit_log.record_async(
                    actor=note.actor or (principal.subject if principal else "anonymous"),
                    role=note.role or (principal.role.value if principal else "-"),
                    action=note.action,
                    study_instance_uid=note.study_instance_uid,
                    outcome=outcome_of(response.status_code),
                    request_id=getattr(request.state, "request_id", None),
                    client_ip=request_client_address(request),
                    dedupe=note.dedupe and response.status_code < 400,
                )
            except Exception:
                # Never answer study data that could not be audited.
                logger.exception("audit write failed")
                return JSONResponse(error_body("internal_error", "the access could not be audited", request),
                                    status_code=500)
        for name, value in security_headers(request.url.path, production).items():
            response.headers.setdefault(name, value)
        return response

    install_common(app, "gateway")
    setup_tracing(settings, "gateway", app=app)
    instrument_celery()  # the publishing side: the trace context travels in the task headers
    # glioscope_jobs_current and glioscope_job_oldest_queued_seconds from the watcher's leader only (one
    # exporter, counted once); glioscope_queue_depth from every replica (the dashboard takes the max).
    register_gateway_collectors(sessions, settings.broker_url,
                                jobs_exported=(lambda: leader.is_leader) if leader is not None else (lambda: False))

    @app.exception_handler(RateLimited)
    @app.exception_handler(UploadsBusy)
    async def _retry_later(request: Request, exc: RateLimited | UploadsBusy) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.detail, request), status_code=exc.status_code,
                            headers={"retry-after": str(max(1, int(exc.retry_after_s + 0.999)))})

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT"], allow_headers=["authorization", "content-type", "x-api-key"])
    app.include_router(auth_router)
    app.include_router(admin_router)
    app.include_router(deliveries_router)
    app.include_router(studies_router)
    app.include_router(segmentations_router)
    app.include_router(reports_router)
    app.include_router(jobs_router)
    app.include_router(models_router)
    app.include_router(dicomweb_router)
    app.state.watcher = watcher
    app.state.watcher_leader = leader
    app.state.segmentation_versions = SegmentationVersions(
        sessions, studies, dicomweb, CeleryEditQueue(settings.broker_url, settings.job_queue)
    )

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
