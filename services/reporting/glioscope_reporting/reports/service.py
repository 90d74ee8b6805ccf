"""Report drafts: create (idempotent per study and job), read, list, render the PDF. No FastAPI here."""

from __future__ import annotations

import io
import json
import uuid
from PIL import Image as PILImage
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope
from glioscope_common.errors import InvalidInput, NotFound, PayloadTooLarge, UnprocessableInput
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.models import KeyImage, Report
from glioscope_reporting.reports.pdf import PdfInput, render_pdf
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.schemas import KEY_IMAGE_NAMES, CreateReport, ReportOut
from glioscope_reporting.settings import Settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def parse_payload(raw: str | bytes) -> CreateReport:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"payload is not valid JSON: {exc}") from exc
    try:
        return CreateReport.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UnprocessableInput(f"invalid payload: {problems}") from exc


def check_key_images(images: list[tuple[str, bytes]], max_bytes: int) -> list[tuple[str, bytes]]:
    """(file name, bytes) -> [(name, png)] ordered axial, coronal, sagittal."""
    named: dict[str, bytes] = {}
    for filename, data in images:
        name = filename.rsplit("/", 1)[-1].lower().removesuffix(".png")
        if name not in KEY_IMAGE_NAMES:
            raise InvalidInput(f"key image {filename!r}: name must be one of {', '.join(KEY_IMAGE_NAMES)} (.png)")
        if name in named:
            raise InvalidInput(f"key image {name!r} given twice")
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"key image {name!r} exceeds {max_bytes} bytes")
        if not data.startswith(PNG_MAGIC):
            raise InvalidInput(f"key image {name!r} is not a PNG")
        try:
            with PILImage.open(io.BytesIO(data)) as img:
                img.verify()
        except Exception as exc:  # Pillow raises many types for broken files
            raise InvalidInput(f"key image {name!r} is not a readable PNG") from exc
        named[name] = data
    return [(n, named[n]) for n in KEY_IMAGE_NAMES if n in named]


def to_out(report: Report) -> ReportOut:
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
            "patient": report.patient,
            "study": report.study,
            "model": report.model,
            "measurements": report.measurements,
            "sections": report.sections,
            "key_images": [k.name for k in report.key_images],
            "pdf_url": f"/api/reports/{report.id}/pdf",
        }
    )


class ReportService:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.session_factory = session_factory

    def create(self, payload_raw: str | bytes, images: list[tuple[str, bytes]]) -> tuple[ReportOut, bool]:
        """Return (report, created). A repeat for the same (study_instance_uid, job_id) returns the first."""
        payload = parse_payload(payload_raw)
        key_images = check_key_images(images, self.settings.max_key_image_bytes)
        existing = self._find(payload.study_instance_uid, payload.job_id)
        if existing is not None:
            return existing, False
        sections = draft_sections(payload.measurements, payload.model)
        report = Report(
            id=str(uuid.uuid4()),
            study_instance_uid=payload.study_instance_uid,
            job_id=payload.job_id,
            status="draft",
            version=1,
            author=None,
            ai_drafted=True,
            patient=payload.patient.model_dump(),
            study=payload.study.model_dump(),
            model=payload.model.model_dump(),
            measurements=payload.measurements.model_dump(mode="json"),
            sections=sections.model_dump(),
            key_images=[KeyImage(name=name, position=i, png=png) for i, (name, png) in enumerate(key_images)],
        )
        try:
            with session_scope(self.session_factory) as session:
                ReportRepository(session).add(report)
                out = to_out(report)
        except IntegrityError:
            # A concurrent request created it first: answer with that one.
            existing = self._find(payload.study_instance_uid, payload.job_id)
            if existing is None:
                raise
            return existing, False
        return out, True

    def _find(self, study_instance_uid: str, job_id: str) -> ReportOut | None:
        with session_scope(self.session_factory) as session:
            report = ReportRepository(session).find(study_instance_uid, job_id)
            return to_out(report) if report else None

    def get(self, report_id: str) -> ReportOut:
        with session_scope(self.session_factory) as session:
            report = ReportRepository(session).get(report_id)
            if report is None:
                raise NotFound(f"no report {report_id}")
            return to_out(report)

    def list(self, study_instance_uid: str | None) -> list[ReportOut]:
        with session_scope(self.session_factory) as session:
            return [to_out(r) for r in ReportRepository(session).list(study_instance_uid)]

    def pdf(self, report_id: str) -> bytes:
        with session_scope(self.session_factory) as session:
            report = ReportRepository(session).get(report_id)
            if report is None:
                raise NotFound(f"no report {report_id}")
            out = to_out(report)
            images = [(k.name, bytes(k.png)) for k in report.key_images]
        data = PdfInput(
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
            signed_by=None,
        )
        return render_pdf(data, self.settings.pdf_image_max_px)

    def ping(self) -> None:
        with session_scope(self.session_factory) as session:
            session.execute(text("SELECT 1 FROM reporting_reports LIMIT 1"))

