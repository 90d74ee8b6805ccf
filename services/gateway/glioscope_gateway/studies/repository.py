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


def _like(search: str) -> str:
    """A LIKE pattern matching `search` literally (its %, _ and \\ escaped with \\)."""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_studies(
    session: Session,
    *,
    status: StudyStatus | None,
    search: str | None,
    limit: int,
    offset: int,
    projects: Sequence[str] | None = None,
    search_identifiers: bool = True,
) -> Sequence[Study]:
    statement = select(Study).options(selectinload(Study.jobs), selectinload(Study.series))
    if projects is not None:
        statement = statement.where(Study.project.in_(list(projects)))
    if status is not None:
        statement = statement.where(Study.status == status)
    if search:
        pattern = _like(search)
        columns = [Study.study_description, Study.study_instance_uid]
        if search_identifiers:  # researchers may not search by patient identifiers
            columns += [Study.patient_name, Study.patient_id, Study.accession_number]
        statement = statement.where(or_(*(column.ilike(pattern, escape="\\") for column in columns)))
    statement = statement.order_by(Study.created_at.desc()).limit(limit).offset(offset)
    return session.scalars(statement).all()


def study_uids_in(session: Session, projects: Sequence[str]) -> set[str]:
    statement = select(Study.study_instance_uid).where(Study.project.in_(list(projects)))
    return set(session.scalars(statement).all())


def get_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def stale_jobs(session: Session, older_than: datetime) -> Sequence[Job]:
    """Jobs queued or running without a sign of life since `older_than`: their message or worker was lost."""
    statement = select(Job).where(Job.state.in_([JobState.queued, JobState.running]), Job.updated_at < older_than)
    return session.scalars(statement).all()


def abandoned_uploads(session: Session, older_than: datetime) -> Sequence[Study]:
    """Studies still claimed by an upload (`receiving`) that has not finished since `older_than`."""
    return session.scalars(
        select(Study).where(Study.status == StudyStatus.receiving, Study.updated_at < older_than)
    ).all()


def series_by_uid(study: Study) -> dict[str, Series]:
    return {s.series_instance_uid: s for s in study.series}
