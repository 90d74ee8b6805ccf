"""Enqueueing segmentation jobs. The job row is committed before the message is sent; a lost message
is recovered by the watcher, which re-enqueues jobs left queued too long (tasks are idempotent)."""

from __future__ import annotations

from typing import Protocol

from celery import Celery

from glioscope_common.broker import celery_broker_url

SEGMENTATION_TASK = "inference.segmentation.run"


class JobQueue(Protocol):
    def enqueue(self, job_id: str) -> None: ...


class CeleryJobQueue:
    task = SEGMENTATION_TASK

    def __init__(self, broker_url: str, queue: str) -> None:
        self._app = Celery("glioscope-gateway", broker=celery_broker_url(broker_url))
        self._app.conf.update(broker_connection_retry_on_startup=True, task_serializer="json")
        self._queue = queue

    def enqueue(self, job_id: str) -> None:
        self._app.send_task(self.task, args=[job_id], queue=self._queue)
