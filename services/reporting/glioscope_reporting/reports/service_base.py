"""What every part of the report service stands on: its settings and sessions, loading a report,
the API view of it (to_out) and a new version row per change."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope, utcnow
from glioscope_common.errors import NotFound
from glioscope_reporting.reports.models import Addendum, Report, ReportVersion, Screenshot
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.schemas import SECTION_NAMES, ReportOut
from glioscope_reporting.reports.validation import Identity
from glioscope_reporting.settings import Settings


def ai_map(value: bool) -> dict[str, bool]:
    return {name: value for name in SECTION_NAMES}


def to_out(report: Report, addenda: list[Addendum], screenshots: list[Screenshot]) -> ReportOut:
    signature = (
        {"signed_by": report.signed_by, "role": report.signed_role or "", "signed_at": report.signed_at}
        if report.signed_by and report.signed_at
        else None
    )
    return ReportOut.model_validate(
        {
            "id": report.id,
            "study_instance_uid": report.study_instance_uid,
            "job_id": report.job_id,
            "status": report.status,
            "version": report.version,
            "created_at": report.created_at,
            "updated_at": report.updated_at,
            "author": report.author,
            "ai_drafted": report.ai_drafted,
            "ai_sections": report.ai_sections or {},
            "patient": report.patient,
            "study": report.study,
            "model": report.model,
            "measurements": report.measurements,
            "segmentation": report.segmentation,
            "review_sections": report.review_sections or [],
            "structured": report.structured or {},
            "sections": report.sections,
            "signature": signature,
            "addenda": [
                {"version": a.version, "created_at": a.created_at, "author": a.author, "role": a.role, "text": a.text}
                for a in addenda
            ],
            "key_images": [k.name for k in report.key_images],
            "screenshots": [
                {"id": s.id, "position": s.position, "caption": s.caption, "author": s.author, "created_at": s.created_at}
                for s in screenshots
            ],
            "export": report.export,
            "pdf_url": f"/api/reports/{report.id}/pdf",
        }
    )


class ReportServiceBase:
    """Settings, sessions and what every part needs: load a report, its API view, a new version, reads."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.session_factory = session_factory

    def _out(self, repo: ReportRepository, report: Report) -> ReportOut:
        return to_out(report, repo.addenda(report.id), repo.screenshots(report.id))

    def _load(self, repo: ReportRepository, report_id: str, for_update: bool = False) -> Report:
        report = repo.get(report_id, for_update=for_update)
        if report is None:
            raise NotFound(f"no report {report_id}")
        return report

    def _new_version(
        self, repo: ReportRepository, report: Report, action: str, identity: Identity | None
    ) -> None:
        report.version += 1
        report.updated_at = utcnow()
        repo.add_version(
            ReportVersion(
                report_id=report.id,
                version=report.version,
                created_at=report.updated_at,
                author=identity.user if identity else None,
                role=identity.role if identity else None,
                action=action,
                sections=dict(report.sections),
                ai_sections=dict(report.ai_sections or {}),
            )
        )

    def get(self, report_id: str) -> ReportOut:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            return self._out(repo, self._load(repo, report_id))

    def list(self, study_instance_uid: str | None) -> list[ReportOut]:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            return [self._out(repo, r) for r in repo.list(study_instance_uid)]

    def ping(self) -> None:
        with session_scope(self.session_factory) as session:
            session.execute(text("SELECT 1 FROM reporting_reports LIMIT 1"))

