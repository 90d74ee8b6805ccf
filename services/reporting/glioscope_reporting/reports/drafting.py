"""Drafting: a new report from the worker's measurements (the rule-based draft, a comparison with
the patient's prior report, optional LLM polishing), and the report following a new segmentation
version (reports/refresh.py)."""

from __future__ import annotations

import logging
import uuid

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from glioscope_common.db import session_scope, utcnow
from glioscope_common.errors import Conflict
from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.analysis import Comparison, Structured, compare, structured_fields
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.llm import LlmConfig, polish
from glioscope_reporting.reports.models import KeyImage, Report, ReportVersion
from glioscope_reporting.reports.refresh import refresh_sections
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.schemas import CreateReport, ModelInfo, RefreshSegmentation, ReportOut
from glioscope_reporting.reports.service_base import ReportServiceBase, ai_map
from glioscope_reporting.reports.validation import Identity, check_key_images, parse_payload

logger = logging.getLogger("glioscope.reporting")


class ReportDrafting(ReportServiceBase):
    """New reports and their refresh on a new segmentation version."""

    def _llm_config(self) -> LlmConfig | None:
        s = self.settings
        if not s.llm_url or not s.llm_model:
            return None
        key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
        return LlmConfig(url=s.llm_url, model=s.llm_model, api_key=key, timeout_s=s.llm_timeout_s)

    # ------------------------------------------------------------------------------------- create / read

    def create(self, payload_raw: str | bytes, images: list[tuple[str, bytes]]) -> tuple[ReportOut, bool]:
        """Return (report, created). A repeat for the same (study_instance_uid, job_id) returns the first."""
        payload = parse_payload(payload_raw)
        key_images = check_key_images(images, self.settings.max_key_image_bytes)
        existing = self._find(payload.study_instance_uid, payload.job_id)
        if existing is not None:
            return existing, False

        comparison = self._comparison(payload)
        structured = structured_fields(payload.measurements, comparison)
        draft = draft_sections(payload.measurements, payload.model, structured)
        sections, ai = draft, False
        config = self._llm_config()
        if config is not None:
            result = polish(config, payload.measurements, draft, payload.model.name)
            sections, ai = result.sections, result.ai_drafted
            logger.info("LLM polishing: %s", result.reason)
        now = utcnow()
        report = Report(
            id=str(uuid.uuid4()),
            study_instance_uid=payload.study_instance_uid,
            job_id=payload.job_id,
            status="draft",
            version=1,
            created_at=now,
            updated_at=now,
            author=None,
            ai_drafted=ai,
            ai_sections=ai_map(ai),
            patient=payload.patient.model_dump(),
            study=payload.study.model_dump(),
            patient_id=payload.patient.patient_id,
            study_date=payload.study.study_date,
            model=payload.model.model_dump(),
            measurements=payload.measurements.model_dump(mode="json"),
            segmentation=payload.segmentation.model_dump(mode="json") if payload.segmentation else None,
            structured=structured.model_dump(mode="json"),
            sections=sections.model_dump(),
            key_images=[KeyImage(name=name, position=i, png=png) for i, (name, png) in enumerate(key_images)],
        )
        try:
            with session_scope(self.session_factory) as session:
                repo = ReportRepository(session)
                repo.add(report)
                repo.add_version(
                    ReportVersion(
                        report_id=report.id, version=1, created_at=now, author=None, role=None,
                        action="created", sections=dict(report.sections), ai_sections=dict(report.ai_sections),
                    )
                )
                out = self._out(repo, report)
        except IntegrityError:
            # A concurrent request created it first: answer with that one.
            existing = self._find(payload.study_instance_uid, payload.job_id)
            if existing is None:
                raise
            return existing, False
        return out, True

    def _comparison(self, payload: CreateReport) -> Comparison | None:
        return self._comparison_for(payload.patient.patient_id, payload.study_instance_uid,
                                    payload.study.study_date, payload.measurements)

    def _comparison_for(
        self, patient_id: str, study_instance_uid: str, study_date: str, measurements: Measurements
    ) -> Comparison | None:
        with session_scope(self.session_factory) as session:
            prior = ReportRepository(session).prior(patient_id, study_instance_uid, study_date)
            if prior is None:
                return None
            return compare(
                measurements,
                Measurements.model_validate(prior.measurements),
                prior.id,
                prior.study_instance_uid,
                prior.study_date,
            )

    # ------------------------------------------------------------------------------------- a new segmentation

    def refresh_segmentation(self, report_id: str, payload_raw: str | bytes, images: list[tuple[str, bytes]],
                             identity: Identity | None) -> ReportOut:
        """The report follows SEG version n (reports/refresh.py). Idempotent: a version the report already
        describes (or an older one) changes nothing. A signed report is not changed (409): its SR and PDF
        keep citing the version that was signed; an addendum is the way to describe the new one."""
        payload = parse_payload(payload_raw, RefreshSegmentation)
        key_images = check_key_images(images, self.settings.max_key_image_bytes)
        with session_scope(self.session_factory) as session:
            report = self._load(ReportRepository(session), report_id)
            current = int((report.segmentation or {}).get("version", 1))
            if payload.segmentation.version <= current:
                return self._out(ReportRepository(session), report)
            if report.status == "final":
                raise Conflict(f"the report is signed and describes segmentation version {current}; version "
                               f"{payload.segmentation.version} is newer: add an addendum")
            patient_id, study_date, study_uid = report.patient_id, report.study_date, report.study_instance_uid
        comparison = self._comparison_for(patient_id, study_uid, study_date, payload.measurements)
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id, for_update=True)
            if report.status == "final" or payload.segmentation.version <= int((report.segmentation or {}).get("version", 1)):
                return self._out(repo, report)  # signed or refreshed meanwhile
            model = ModelInfo.model_validate(report.model)
            old_measurements = Measurements.model_validate(report.measurements)
            try:
                old_structured: Structured | None = Structured.model_validate(report.structured)
            except ValidationError:  # drafted before the atlas location: redraft from the measurements
                old_structured = None
            new_structured = structured_fields(payload.measurements, comparison)
            refreshed = refresh_sections(
                report.sections, report.ai_sections or {},
                draft_sections(old_measurements, model, old_structured),
                draft_sections(payload.measurements, model, new_structured),
                list(report.review_sections or []),
            )
            report.measurements = payload.measurements.model_dump(mode="json")
            report.structured = new_structured.model_dump(mode="json")
            report.segmentation = payload.segmentation.model_dump(mode="json")
            report.sections = refreshed.sections
            report.ai_sections = refreshed.ai_sections
            report.ai_drafted = any(refreshed.ai_sections.values())
            report.review_sections = refreshed.review
            if key_images:  # the new version's pictures: the old ones are deleted first (one image per name)
                report.key_images.clear()
                session.flush()
                report.key_images.extend(KeyImage(name=name, position=i, png=png) for i, (name, png) in enumerate(key_images))
            self._new_version(repo, report, f"segmentation:v{payload.segmentation.version}", identity)
            return self._out(repo, report)

    def _find(self, study_instance_uid: str, job_id: str) -> ReportOut | None:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = repo.find(study_instance_uid, job_id)
            return self._out(repo, report) if report else None

