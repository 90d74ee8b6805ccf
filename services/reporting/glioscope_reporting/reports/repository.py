from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from glioscope_reporting.reports.models import Report


class ReportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, report_id: str) -> Report | None:
        return self.session.get(Report, report_id)

    def find(self, study_instance_uid: str, job_id: str) -> Report | None:
        return self.session.scalars(
            select(Report).where(Report.study_instance_uid == study_instance_uid, Report.job_id == job_id)
        ).one_or_none()

    def list(self, study_instance_uid: str | None) -> list[Report]:
        query = select(Report).order_by(Report.created_at.desc(), Report.id)
        if study_instance_uid:
            query = query.where(Report.study_instance_uid == study_instance_uid)
        return list(self.session.scalars(query))

    def add(self, report: Report) -> None:
        self.session.add(report)
        self.session.flush()
