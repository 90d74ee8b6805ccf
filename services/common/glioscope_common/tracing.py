"""OpenTelemetry tracing, switched on by GLIOSCOPE_OTEL_ENDPOINT (an OTLP/HTTP collector URL, e.g.
http://otel-collector.monitoring:4318). Empty: nothing is set up and nothing is exported.

- HTTP services: `setup_tracing(settings, "gateway", app=app)` instruments the FastAPI app.
- Celery: `instrument_celery()` in the worker's `worker_process_init` (each prefork child) and in the
  publisher (the gateway) - the publishing side injects the trace context into the task headers
  (`before_task_publish`), the worker extracts it (`task_prerun`), so one trace runs
  gateway -> queue -> worker -> Triton.
When the opentelemetry-instrumentation packages are missing, the same propagation is done by hand
with `opentelemetry.propagate.inject/extract` on Celery's signals.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("glioscope.tracing")

_state: dict[str, Any] = {"provider": None, "celery": False}


def tracing_enabled(settings: Any) -> bool:
    return bool(getattr(settings, "otel_endpoint", ""))


def setup_tracing(settings: Any, service: str, app: Any = None) -> bool:
    """Install the tracer provider (once per process) and instrument `app` (FastAPI) if given."""
    if not tracing_enabled(settings):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning("GLIOSCOPE_OTEL_ENDPOINT is set but opentelemetry-sdk is not installed; tracing off")
        return False
    if _state["provider"] is None:
        provider = TracerProvider(
            resource=Resource.create({"service.name": f"glioscope-{service}", "service.namespace": "glioscope",
                                      "deployment.environment": str(getattr(settings, "environment", ""))})
        )
        exporter = _exporter(settings.otel_endpoint)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _state["provider"] = provider
    if app is not None:
        instrument_fastapi(app)
    return True


def _exporter(endpoint: str) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning("opentelemetry-exporter-otlp-proto-http is not installed; spans are not exported")
        return None
    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


def instrument_fastapi(app: Any) -> None:
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        logger.warning("opentelemetry-instrumentation-fastapi is not installed; HTTP requests are not traced")
        return
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def instrument_celery() -> None:
    """Trace Celery publishing and task execution in this process (call after setup_tracing)."""
    if _state["provider"] is None or _state["celery"]:
        return
    try:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=_state["provider"])
    except ImportError:
        _manual_celery_propagation()
    _state["celery"] = True


def _manual_celery_propagation() -> None:
    """The fallback: carry the W3C trace context in the task headers and continue it in the worker."""
    from celery.signals import before_task_publish, task_postrun, task_prerun
    from opentelemetry import context, trace
    from opentelemetry.propagate import extract, inject

    tracer = trace.get_tracer("glioscope.celery")
    active: dict[str, tuple[Any, Any]] = {}

    @before_task_publish.connect(weak=False)
    def _inject(headers: dict[str, Any] | None = None, **_: Any) -> None:
        if headers is not None:
            inject(headers)

    @task_prerun.connect(weak=False)
    def _start(task_id: str = "", task: Any = None, **_: Any) -> None:
        request = getattr(task, "request", None)
        carrier = (getattr(request, "headers", None) or vars(request)) if request is not None else {}
        span = tracer.start_span(f"run/{getattr(task, 'name', 'task')}", context=extract(carrier), kind=trace.SpanKind.CONSUMER)
        token = context.attach(trace.set_span_in_context(span))
        active[task_id] = (span, token)

    @task_postrun.connect(weak=False)
    def _end(task_id: str = "", **_: Any) -> None:
        span, token = active.pop(task_id, (None, None))
        if span is not None:
            context.detach(token)
            span.end()


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for log lines; None outside a recorded span."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
