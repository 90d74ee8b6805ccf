"""The Celery app: `celery -A glioscope_inference.worker worker -Q cpu` (or gpu next to Triton).

Tasks acknowledge late and are rejected back to the queue when the worker process dies, so a job
being processed by a killed worker runs again; the task itself is idempotent.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from kombu import Queue

from glioscope_common.broker import celery_broker_url
from glioscope_common.logs import configure_logging
from glioscope_common.metrics import initialise_job_metrics, mark_process_dead, start_metrics_server
from glioscope_common.tracing import instrument_celery, setup_tracing
from glioscope_inference.settings import InferenceSettings

settings = InferenceSettings()

app = Celery("glioscope-inference", broker=celery_broker_url(settings.broker_url), include=["glioscope_inference.segmentation.tasks", "glioscope_inference.editing.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue="cpu",
    task_queues=[Queue("io"), Queue("cpu"), Queue("gpu")],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # A pool process warms up (model session, highdicom tables) before it reports up: give it time.
    worker_proc_alive_timeout=60,
)
# Note: kombu's SQLAlchemy transport hands every broker_transport_options key to create_engine, so
# no transport options (visibility_timeout, polling_interval) may be set for the embedded broker;
# glioscope_common.broker sets its polling interval on a transport subclass.


@worker_process_init.connect
def _init_process(**_: object) -> None:
    configure_logging(settings.log_json)
    initialise_job_metrics()  # glioscope_jobs_total{state} at 0 before the first job (this child's file)
    if setup_tracing(settings, "worker"):
        instrument_celery()


@worker_init.connect
def _init_worker(**_: object) -> None:
    # The main process serves /metrics; prefork children write to PROMETHEUS_MULTIPROC_DIR (set in the
    # chart's worker Deployment and by the embedded stack, glioscope_common.dev.stack).
    start_metrics_server(settings.metrics_port)
    initialise_job_metrics()


@worker_process_shutdown.connect
def _process_exit(pid: int | None = None, **_: object) -> None:
    if pid:
        mark_process_dead(pid)
