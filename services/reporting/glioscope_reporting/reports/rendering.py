"""Rendering: the report's current version as a PDF (reports/pdf.py) with its key images and screenshots."""

from __future__ import annotations

from glioscope_common.db import session_scope
from glioscope_reporting.reports.pdf import PdfInput, render_pdf
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.service_base import ReportServiceBase


class ReportRendering(ReportServiceBase):
    """The PDF of the current version."""

    def _pdf_input(self, report_id: str) -> PdfInput:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id)
            out = self._out(repo, report)
            images = [(k.name, bytes(k.png)) for k in report.key_images]
            shots = [(s.caption, bytes(s.png)) for s in repo.screenshots(report_id)]
        return PdfInput(
            report_id=out.id,
            status=out.status,
            version=out.version,
            study_instance_uid=out.study_instance_uid,
            patient=out.patient,
            study=out.study,
            model=out.model,
            measurements=out.measurements,
            sections=out.sections,
            key_images=images,
            signed_by=out.signature.signed_by if out.signature else None,
            signed_role=out.signature.role if out.signature else None,
            signed_at=out.signature.signed_at if out.signature else None,
            ai_sections=out.ai_sections.model_dump(),
            structured=out.structured,
            addenda=[(a.author, a.role, a.created_at, a.text) for a in out.addenda],
            screenshots=shots,
        )

    def pdf(self, report_id: str) -> bytes:
        return render_pdf(self._pdf_input(report_id), self.settings.pdf_image_max_px)

