from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from glioscope_reporting.reports.models import Addendum, Report, ReportVersion, Screenshot


class ReportRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, report_id: str, for_update: bool = False) -> Report | None:
        if for_update:
            return self.session.scalars(select(Report).where(Report.id == report_id).with_for_update()).one_or_none()
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

    def prior(self, patient_id: str, study_instance_uid: str, study_date: str) -> Report | None:
        """The newest report of the same patient on an earlier study (study_date as YYYYMMDD)."""
        if not patient_id or len(study_date) != 8:
            return None
        query = (
            select(Report)
            .where(
                Report.patient_id == patient_id,
                Report.study_instance_uid != study_instance_uid,
                func.length(Report.study_date) == 8,
                Report.study_date < study_date,
            )
            .order_by(Report.study_date.desc(), Report.created_at.desc())
            .limit(1)
        )
        return self.session.scalars(query).first()

    def add(self, report: Report) -> None:
        self.session.add(report)
        self.session.flush()

    def add_version(self, version: ReportVersion) -> None:
        self.session.add(version)
        self.session.flush()

    def versions(self, report_id: str) -> list[ReportVersion]:
        return list(
            self.session.scalars(select(ReportVersion).where(ReportVersion.report_id == report_id).order_by(ReportVersion.version))
        )

    def version(self, report_id: str, version: int) -> ReportVersion | None:
        return self.session.scalars(
            select(ReportVersion).where(ReportVersion.report_id == report_id, ReportVersion.version == version)
        ).one_or_none()

    def addenda(self, report_id: str) -> list[Addendum]:
        return list(self.session.scalars(select(Addendum).where(Addendum.report_id == report_id).order_by(Addendum.id)))

    def screenshots(self, report_id: str) -> list[Screenshot]:
        return list(
            self.session.scalars(select(Screenshot).where(Screenshot.report_id == report_id).order_by(Screenshot.position))
        )
