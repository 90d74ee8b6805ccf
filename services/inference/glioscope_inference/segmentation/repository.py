"""Job-row updates for the worker. Every write is a short transaction: the row is the job's truth."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope, utcnow
from glioscope_common.records.models import Job, JobState


class JobRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def load(self, job_id: str) -> Job | None:
        with session_scope(self._sessions) as session:
            job = session.get(Job, job_id)
            if job is not None:
                _ = job.study.study_instance_uid  # load the study while the session is open
            return job

    def claim(self, job_id: str) -> bool:
        """Mark the job running (again, after a crash). False when it already ended."""
        with session_scope(self._sessions) as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_([JobState.queued, JobState.running]))
                .values(
                    state=JobState.running, stage="fetch", progress=0.0, error=None,
                    attempts=Job.attempts + 1, started_at=utcnow(), updated_at=utcnow(),
                )
            )
            return result.rowcount == 1  # type: ignore[attr-defined]

    def progress(self, job_id: str, stage: str, progress: float) -> None:
        with session_scope(self._sessions) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.running)
                .values(stage=stage, progress=progress, updated_at=utcnow())
            )

    def succeed(self, job_id: str, **fields: Any) -> None:
        with session_scope(self._sessions) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.running)
                .values(state=JobState.succeeded, stage="done", progress=1.0, finished_at=utcnow(), updated_at=utcnow(), **fields)
            )

    def fail(self, job_id: str, error: str, timings_s: dict[str, float] | None = None) -> None:
        values: dict[str, Any] = {"state": JobState.failed, "error": error, "finished_at": utcnow(), "updated_at": utcnow()}
        if timings_s is not None:
            values["timings_s"] = timings_s
        with session_scope(self._sessions) as session:
            session.execute(update(Job).where(Job.id == job_id, Job.state != JobState.succeeded).values(**values))

    def back_to_queue(self, job_id: str, reason: str) -> None:
        """An upstream was unavailable: the job waits for its retry, with the reason visible."""
        with session_scope(self._sessions) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.running)
                .values(state=JobState.queued, stage="waiting-retry", error=reason, updated_at=utcnow())
            )
