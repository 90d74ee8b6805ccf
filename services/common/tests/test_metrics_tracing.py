"""glioscope_common.metrics and .tracing: job observation, the scrape-time collectors, the worker's
multiprocess metrics server, trace context through Celery headers, trace IDs in JSON logs."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
import urllib.request
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from glioscope_common.dev.testing import require_module
from glioscope_common import metrics
from glioscope_common.logs import JsonFormatter
from glioscope_common.settings import CommonSettings


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_observe_job_counts_state_stages_and_upload_to_result() -> None:
    created = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)
    job = SimpleNamespace(state=SimpleNamespace(value="succeeded"), timings_s={"fetch": 1.5, "inference": 12.0, "outputs": 2.0},
                          created_at=created, finished_at=created + timedelta(seconds=95))
    before = {
        "ok": sample("glioscope_jobs_total", {"state": "succeeded"}),
        "inference": sample("glioscope_inference_seconds_count", {"backend": "triton"}),
        "fetch": sample("glioscope_job_stage_seconds_sum", {"stage": "fetch"}),
        "u2r": sample("glioscope_upload_to_result_seconds_sum"),
    }
    metrics.observe_job(job, "grpc://triton:8001")
    assert sample("glioscope_jobs_total", {"state": "succeeded"}) == before["ok"] + 1
    assert sample("glioscope_inference_seconds_count", {"backend": "triton"}) == before["inference"] + 1
    assert sample("glioscope_job_stage_seconds_sum", {"stage": "fetch"}) == pytest.approx(before["fetch"] + 1.5)
    assert sample("glioscope_upload_to_result_seconds_sum") == pytest.approx(before["u2r"] + 95)
    # A running job (the task was only retried) or no row records nothing.
    metrics.observe_job(SimpleNamespace(state="running", timings_s={}, created_at=None, finished_at=None), "onnxruntime")
    metrics.observe_job(None, "onnxruntime")
    assert sample("glioscope_jobs_total", {"state": "succeeded"}) == before["ok"] + 1
    assert metrics.backend_label("onnxruntime") == "onnxruntime"


def test_jobs_by_state_collector_reads_the_records_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from glioscope_common.db import make_engine, make_session_factory
    from glioscope_common.records.migrate import migrate
    from glioscope_common.records.models import Job, JobState, Study, StudyStatus

    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    sessions = make_session_factory(make_engine(url))
    with sessions() as session:
        study = Study(study_instance_uid="1.2.3", status=StudyStatus.ready)
        session.add(study)
        session.flush()
        session.add_all([Job(study_id=study.id, state=JobState.failed), Job(study_id=study.id, state=JobState.succeeded),
                         Job(study_id=study.id, state=JobState.succeeded)])
        session.commit()
    registry = CollectorRegistry()
    registry.register(metrics.JobsByStateCollector(metrics.jobs_by_state_from_sessions(sessions)))
    assert registry.get_sample_value("glioscope_jobs_current", {"state": "succeeded"}) == 2
    assert registry.get_sample_value("glioscope_jobs_current", {"state": "failed"}) == 1
    assert registry.get_sample_value("glioscope_jobs_current", {"state": "queued"}) == 0
    # A database that is down leaves the metric out instead of failing the scrape.
    broken = CollectorRegistry()
    broken.register(metrics.JobsByStateCollector(lambda: 1 / 0))  # type: ignore[arg-type,return-value]
    assert b"glioscope_jobs_current{" not in generate_latest(broken)
    assert broken.get_sample_value("glioscope_jobs_current", {"state": "queued"}) is None


def test_queue_depth_collector_caches_and_skips_unknown_queues() -> None:
    calls: list[str] = []

    def depth(queue: str) -> int | None:
        calls.append(queue)
        return {"cpu": 4, "gpu": 0}.get(queue)

    registry = CollectorRegistry()
    registry.register(metrics.QueueDepthCollector(depth, ttl_s=60))
    assert registry.get_sample_value("glioscope_queue_depth", {"queue": "cpu"}) == 4
    assert registry.get_sample_value("glioscope_queue_depth", {"queue": "io"}) is None
    calls.clear()
    registry.get_sample_value("glioscope_queue_depth", {"queue": "gpu"})
    assert calls == []  # served from the cache


def test_queue_depth_from_a_kombu_broker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kombu import Connection

    url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    with Connection(url) as connection:
        queue = connection.SimpleQueue("cpu")
        queue.put({"job": 1})
        queue.put({"job": 2})
        queue.close()
    assert metrics.broker_queue_depth(url)("cpu") == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_worker_metrics_server_aggregates_forked_children(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Multiprocess mode: children (prefork) observe, the main process serves the sum."""
    port = _free_port()
    script = textwrap.dedent(f"""
        import os, sys, time, urllib.request
        from glioscope_common import metrics
        (open({str(tmp_path / 'stale.db')!r}, 'w')).close()  # a previous run's file is cleared
        assert metrics.start_metrics_server({port})
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                metrics.count_job("failed")
                os._exit(0)
            os.waitpid(pid, 0)
        body = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        print(body)
    """)
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'glioscope_jobs_total{state="failed"} 2.0' in out.stdout
    assert not (tmp_path / "stale.db").exists()


def test_tracing_is_off_without_an_endpoint() -> None:
    from glioscope_common import tracing

    assert tracing.setup_tracing(CommonSettings(), "test") is False
    assert tracing.current_ids() is None


def test_trace_context_travels_in_celery_headers_and_into_json_logs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Publisher and worker in one process (eager-free: a real kombu broker on SQLite): the worker's
    span has the publisher's trace id, and a log line inside the task carries it."""
    require_module("opentelemetry.sdk")
    script = textwrap.dedent(f"""
        import json, logging, threading
        from celery import Celery
        from opentelemetry import trace
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from glioscope_common import tracing
        from glioscope_common.logs import JsonFormatter
        from glioscope_common.settings import CommonSettings

        tracing._exporter = lambda endpoint: None  # no collector here: spans stay in memory
        settings = CommonSettings(otel_endpoint="http://127.0.0.1:9/")
        assert tracing.setup_tracing(settings, "test")
        exporter = InMemorySpanExporter()
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
        tracing.instrument_celery()

        app = Celery("t", broker="sqla+sqlite:///{tmp_path / 'b.db'}")
        app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False)
        lines = []
        class Capture(logging.Handler):
            def emit(self, record):
                lines.append(JsonFormatter().format(record))
        log = logging.getLogger("probe"); log.addHandler(Capture()); log.setLevel(logging.INFO)

        @app.task(name="probe.run")
        def run():
            log.info("inside the task")

        with trace.get_tracer("test").start_as_current_span("upload") as span:
            publisher_trace = format(span.get_span_context().trace_id, "032x")
            app.send_task("probe.run")
        worker = app.Worker(pool="solo", concurrency=1, without_heartbeat=True, without_mingle=True, without_gossip=True, loglevel="WARNING")
        threading.Timer(8, lambda: worker.stop()).start()
        def stop_when_done(*a, **k):
            threading.Timer(0.5, lambda: worker.stop()).start()
        from celery.signals import task_postrun
        task_postrun.connect(stop_when_done, weak=False)
        import atexit
        def report():
            traces = {{format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()}}
            print("RESULT " + json.dumps({{"publisher": publisher_trace, "traces": sorted(traces), "lines": lines}}), flush=True)
        atexit.register(report)
        worker.start()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    text = out.stdout + out.stderr  # the worker redirects stdout to its logger
    assert "RESULT " in text, text[-3000:]
    result = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])
    assert result["traces"] == [result["publisher"]], result
    logged = [json.loads(line) for line in result["lines"] if "inside the task" in line]
    assert logged and logged[0]["trace_id"] == result["publisher"]


def test_json_formatter_without_a_span_has_no_trace_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    payload = json.loads(JsonFormatter().format(record))
    assert payload["msg"] == "hello" and "trace_id" not in payload


def test_gateway_collectors_register_beside_the_job_counter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The scrape-time gauges' names do not clash with the metrics in the default registry."""
    from prometheus_client import REGISTRY

    from glioscope_common.db import make_engine, make_session_factory
    from glioscope_common.records.migrate import migrate

    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    # A gateway app created by an earlier test in this process holds the names: step it aside.
    earlier = [c for c in list(REGISTRY._collector_to_names)
               if isinstance(c, (metrics.JobsByStateCollector, metrics.QueueDepthCollector))]
    for collector in earlier:
        REGISTRY.unregister(collector)
    collectors = metrics.register_gateway_collectors(make_session_factory(make_engine(url)), f"sqla+sqlite:///{tmp_path / 'b.db'}")
    try:
        assert REGISTRY.get_sample_value("glioscope_jobs_current", {"state": "queued"}) == 0
    finally:
        for collector in collectors:
            REGISTRY.unregister(collector)
        for collector in earlier:
            REGISTRY.register(collector)
