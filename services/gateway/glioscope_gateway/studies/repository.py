from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from glioscope_common.records.models import Job, JobState, Series, Study, StudyStatus


def get_study(session: Session, study_instance_uid: str) -> Study | None:
    statement = (
        select(Study)
        .where(Study.study_instance_uid == study_instance_uid)
        .options(selectinload(Study.series), selectinload(Study.jobs))
    )
    return session.scalars(statement).first()


def list_studies(
    session: Session, *, status: StudyStatus | None, search: str | None, limit: int, offset: int
) -> Sequence[Study]:
    statement = select(Study).options(selectinload(Study.jobs), selectinload(Study.series))
    if status is not None:
        statement = statement.where(Study.status == status)
    if search:
        pattern = f"%{search}%"
        statement = statement.where(
            or_(
                Study.patient_name.ilike(pattern),
                Study.patient_id.ilike(pattern),
                Study.study_description.ilike(pattern),
                Study.accession_number.ilike(pattern),
                Study.study_instance_uid.ilike(pattern),
            )
        )
    statement = statement.order_by(Study.created_at.desc()).limit(limit).offset(offset)
    return session.scalars(statement).all()


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def stale_jobs(session: Session, older_than: datetime) -> Sequence[Job]:
    """Jobs queued or running without a sign of life since `older_than`: their message or worker was lost."""
    statement = select(Job).where(Job.state.in_([JobState.queued, JobState.running]), Job.updated_at < older_than)
    return session.scalars(statement).all()


def series_by_uid(study: Study) -> dict[str, Series]:
    return {s.series_instance_uid: s for s in study.series}
