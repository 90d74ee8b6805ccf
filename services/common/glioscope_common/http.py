"""FastAPI glue shared by the HTTP services: request IDs, error mapping, /metrics."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from glioscope_common.errors import GlioscopeError, Unauthorized

logger = logging.getLogger("glioscope.http")

REQUEST_LATENCY = Histogram(
    "glioscope_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
)
REQUEST_ERRORS = Counter("glioscope_http_errors_total", "HTTP responses with status >= 500", ["service", "route"])


def initialise_http_metrics(app: FastAPI, service: str) -> None:
    """Create glioscope_http_errors_total{service, route} at 0 for every route of the app (and
    `unmatched`): a series born at 1 hides its first error from rate()/increase()."""
    for path in [*_route_paths(app.routes), "unmatched"]:
        REQUEST_ERRORS.labels(service, path)


def _route_paths(routes: list[Any]) -> Iterator[str]:
    """The paths a request's matched route reports (`scope["route"].path`). FastAPI >= 0.12x keeps an
    included router as one entry whose routes come from `effective_route_contexts()`."""
    for route in routes:
        path = getattr(route, "path", None)
        if path is not None:
            yield path
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                if getattr(context, "path", None):
                    yield context.path
        elif path is None and isinstance(getattr(route, "routes", None), list):
            yield from _route_paths(route.routes)


def error_body(code: str, detail: object, request: Request) -> dict[str, object]:
    return {"error": code, "detail": detail, "request_id": getattr(request.state, "request_id", None)}


def install_common(app: FastAPI, service: str) -> None:
    """Request IDs, latency metrics, the JSON error mapping and GET /metrics."""

    initialised = False

    @app.middleware("http")
    async def _request_context(request: Request, call_next):  # type: ignore[no-untyped-def]
        nonlocal initialised
        if not initialised:  # the first request (a probe at start-up): every route is registered by now
            initialise_http_metrics(app, service)
            initialised = True
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            logger.exception("unhandled error", extra={"request_id": request.state.request_id})
            response = JSONResponse(error_body("internal_error", "internal error", request), status_code=500)
        route = request.scope.get("route")
        route_path = getattr(route, "path", "unmatched")
        REQUEST_LATENCY.labels(service, request.method, route_path, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        if response.status_code >= 500:
            REQUEST_ERRORS.labels(service, route_path).inc()
        response.headers["x-request-id"] = request.state.request_id
        response.headers.setdefault("x-content-type-options", "nosniff")
        return response

    @app.exception_handler(GlioscopeError)
    async def _glioscope_error(request: Request, exc: GlioscopeError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse(error_body(exc.code, exc.detail, request), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse(error_body("invalid_input", detail, request), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body("http_error", exc.detail, request), status_code=exc.status_code)

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
