"""Prometheus metrics shared by the services (the HTTP ones live in glioscope_common.http).

The worker runs Celery's prefork pool: tasks run in child processes, so the worker serves its
metrics from the main process in prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
set in its Deployment). `start_metrics_server` handles both modes. Without the variable (the embedded
configuration, tests) the metrics live in the process's default registry.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("glioscope.metrics")

# Seconds: a job takes from tens of seconds (Triton) to tens of minutes (CPU).
_JOB_BUCKETS = (5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 3600, float("inf"))
_STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))

JOBS_TOTAL = Counter(
    "glioscope_jobs_total",
    "Segmentation jobs that reached a state in a worker (succeeded, failed, retried, skipped)",
    ["state"],
)
JOB_STAGE_SECONDS = Histogram(
    "glioscope_job_stage_seconds", "Duration of each stage of a segmentation job", ["stage"], buckets=_STAGE_BUCKETS
)
UPLOAD_TO_RESULT_SECONDS = Histogram(
    "glioscope_upload_to_result_seconds",
    "From the job's creation (upload committed) to its successful result",
    buckets=_JOB_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "glioscope_inference_seconds", "Model inference time of a job (sliding window)", ["backend"], buckets=_STAGE_BUCKETS
)
# glioscope_queue_depth{queue} and glioscope_jobs_current{state} are gauges computed on scrape (collectors below).
# (Not "glioscope_jobs": that is the family name of the glioscope_jobs_total counter.)

# Stages whose duration is inference proper (pipeline timings_s keys).
INFERENCE_STAGES = ("inference",)

# A fallback that keeps a service running in a weaker mode is counted here, never taken silently (issue 23):
# `component` names it (ratelimit_redis: a sign-in/upload limit held per process because Redis failed;
# oidc_jwks_stale: OIDC tokens checked with keys kept from an earlier fetch; export_cleanup: a
# de-identified copy that could not be deleted). Alert: GlioscopeDegraded (infra/prometheus/rules).
DEGRADED_TOTAL = Counter(
    "glioscope_degraded_total", "Times a component fell back to a degraded mode", ["component"]
)


def count_degraded(component: str) -> None:
    DEGRADED_TOTAL.labels(component=component).inc()


def backend_label(inference_url: str) -> str:
    """`triton` for grpc/http URLs, `onnxruntime` otherwise (the label of glioscope_inference_seconds)."""
    return "triton" if inference_url.startswith(("grpc://", "http://", "https://")) else "onnxruntime"


def observe_job(job: Any, inference_url: str) -> None:
    """Record a job row after the worker ran it: its final state, stage durations (`timings_s`), the
    inference time, and upload-to-result for a success. `job` is a records Job (or None)."""
    if job is None:
        return
    state = getattr(job.state, "value", str(job.state))
    if state not in ("succeeded", "failed"):
        return
    JOBS_TOTAL.labels(state).inc()
    timings: Mapping[str, float] = job.timings_s or {}
    for stage, seconds in timings.items():
        if isinstance(seconds, (int, float)) and seconds >= 0:
            JOB_STAGE_SECONDS.labels(stage).observe(seconds)
            if stage in INFERENCE_STAGES:
                INFERENCE_SECONDS.labels(backend_label(inference_url)).observe(seconds)
    if state == "succeeded" and job.created_at and job.finished_at:
        UPLOAD_TO_RESULT_SECONDS.observe(max(0.0, (_aware(job.finished_at) - _aware(job.created_at)).total_seconds()))


# Every outcome's series exists at 0 from the start, so that rate()/increase() see the first one.
JOB_OUTCOMES = ("succeeded", "failed", "retried", "skipped")


def initialise_job_metrics() -> None:
    """Create the glioscope_jobs_total children at 0 (each worker process; in multiprocess mode this
    writes the zeros to the process's file, so the main process serves them before the first job)."""
    for state in JOB_OUTCOMES:
        JOBS_TOTAL.labels(state)


def count_job(state: str) -> None:
    """Count a job outcome that has no finished row to observe (e.g. `retried`, `skipped`)."""
    JOBS_TOTAL.labels(state).inc()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class JobsByStateCollector(Collector):
    """`glioscope_jobs_current{state}`: jobs in the records database per state, and
    `glioscope_job_oldest_queued_seconds`: the age of the oldest queued job (0 with none), read on scrape.

    The numbers describe the database, not the process: exactly one process exports them (the gateway
    replica whose Orthanc watcher leads, `exported`), so `sum` over the targets counts each job once."""

    def __init__(self, count_by_state: Callable[[], Mapping[str, int]],
                 oldest_queued_age: Callable[[], float] | None = None,
                 exported: Callable[[], bool] = lambda: True) -> None:
        self._count = count_by_state
        self._oldest = oldest_queued_age
        self._exported = exported

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("glioscope_jobs_current", "Jobs in the records database by state", labels=["state"]),
                GaugeMetricFamily("glioscope_job_oldest_queued_seconds",
                                  "Seconds since the oldest job still queued was created (0: none queued)"))

    def describe(self) -> Iterable[GaugeMetricFamily]:  # registering must not query the database
        yield from self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if not self._exported():
            return
        family, oldest = self._families()
        try:
            counts = dict(self._count())
            age = self._oldest() if self._oldest else None
        except Exception:  # the database being down must not break /metrics
            logger.debug("jobs collector failed", exc_info=True)
            return
        for state in ("queued", "running", "succeeded", "failed"):
            counts.setdefault(state, 0)
        for state, value in sorted(counts.items()):
            family.add_metric([state], value)
        yield family
        if age is not None:
            oldest.add_metric([], age)
            yield oldest


def jobs_by_state_from_sessions(sessions: Any) -> Callable[[], dict[str, int]]:
    """A counter function for JobsByStateCollector over a SQLAlchemy session factory."""

    def count() -> dict[str, int]:
        from sqlalchemy import func, select

        from glioscope_common.records.models import Job

        with sessions() as session:
            rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        return {getattr(state, "value", str(state)): int(n) for state, n in rows}

    return count


def oldest_queued_age_from_sessions(sessions: Any) -> Callable[[], float]:
    """Seconds since the oldest queued job was created (0 when none is queued), for JobsByStateCollector."""

    def age() -> float:
        from sqlalchemy import func, select

        from glioscope_common.records.models import Job, JobState

        with sessions() as session:
            oldest = session.execute(select(func.min(Job.created_at)).where(Job.state == JobState.queued)).scalar()
        if oldest is None:
            return 0.0
        if isinstance(oldest, str):  # SQLite's min() over the stored text
            oldest = datetime.fromisoformat(oldest)
        return max(0.0, (datetime.now(timezone.utc) - _aware(oldest)).total_seconds())

    return age


class QueueDepthCollector(Collector):
    """`glioscope_queue_depth{queue}` read from the broker on scrape (cached `ttl_s` seconds)."""

    def __init__(self, depth: Callable[[str], int | None], queues: Iterable[str] = ("cpu", "gpu", "io"), ttl_s: float = 10.0) -> None:
        self._depth = depth
        self._queues = tuple(queues)
        self._ttl = ttl_s
        self._cached: tuple[float, dict[str, int]] = (-float("inf"), {})

    def describe(self) -> Iterable[GaugeMetricFamily]:  # registering must not contact the broker
        yield GaugeMetricFamily("glioscope_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = time.monotonic()
        if now - self._cached[0] > self._ttl:
            depths: dict[str, int] = {}
            for queue in self._queues:
                try:
                    value = self._depth(queue)
                except Exception:
                    logger.debug("queue depth of %s unavailable", queue, exc_info=True)
                    value = None
                if value is not None:
                    depths[queue] = value
            self._cached = (now, depths)
        family = GaugeMetricFamily("glioscope_queue_depth", "Messages waiting in a Celery queue", labels=["queue"])
        for queue, value in sorted(self._cached[1].items()):
            family.add_metric([queue], value)
        yield family


def broker_queue_depth(broker_url: str, timeout_s: float = 3.0) -> Callable[[str], int | None]:
    """Messages ready in a queue, by a passive declare on the broker (kombu; AMQP and SQLAlchemy transports)."""

    def depth(queue: str) -> int | None:
        from kombu import Connection

        with Connection(broker_url, connect_timeout=timeout_s, transport_options={"max_retries": 0}) as connection:
            channel = connection.default_channel
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except Exception:
                return None

    return depth


def register_gateway_collectors(sessions: Any, broker_url: str, registry: CollectorRegistry = REGISTRY,
                                jobs_exported: Callable[[], bool] = lambda: True) -> list[Collector]:
    """The gateway's scrape-time collectors: jobs by state and the oldest queued job (records DB; only
    while `jobs_exported()`, the watcher's leader) and queue depth (broker)."""
    collectors: list[Collector] = [
        JobsByStateCollector(jobs_by_state_from_sessions(sessions), oldest_queued_age_from_sessions(sessions),
                             jobs_exported),
        QueueDepthCollector(broker_queue_depth(broker_url)),
    ]
    for collector in collectors:
        try:
            registry.register(collector)
        except ValueError:  # already registered (several apps in one process, e.g. tests)
            logger.warning("metrics collector %s not registered (name already taken)", type(collector).__name__)
    return collectors


def multiprocess_dir() -> Path | None:
    """prometheus-client's own switch (the library reads it at import; the worker Deployment sets it),
    not a Glioscope setting: read here only to choose how to serve."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def start_metrics_server(port: int) -> bool:
    """Serve /metrics on `port` from this (the worker's main) process; 0 disables. In multiprocess mode
    the directory is emptied first (files of a previous container run) and the server aggregates the
    children's files. Returns whether a server was started."""
    if not port:
        return False
    directory = multiprocess_dir()
    if directory is None:
        start_http_server(port)
        return True
    from prometheus_client import multiprocess

    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    start_http_server(port, registry=registry)
    return True


def mark_process_dead(pid: int) -> None:
    """Call when a prefork child exits (multiprocess mode): drops its live gauges."""
    if multiprocess_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
