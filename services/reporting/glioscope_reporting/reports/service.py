"""Reports: create (idempotent per study and job), read, edit with versions, diff, sign, addenda,
screenshots, PDF, and the DICOM export (Encapsulated PDF + TID 1500 SR) to the PACS. No FastAPI here."""

from __future__ import annotations

import difflib
import io
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from PIL import Image as PILImage
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope, utcnow
from glioscope_common.dicomweb.client import HttpDicomWeb, make_dicomweb
from glioscope_common.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, UnprocessableInput, UpstreamUnavailable
from glioscope_common.measurements import Measurements
from glioscope_reporting.reports import dicom_export
from glioscope_reporting.reports.analysis import Comparison, Structured, compare, structured_fields
from glioscope_reporting.reports.draft import draft_sections
from glioscope_reporting.reports.llm import LlmConfig, polish
from glioscope_reporting.reports.models import Addendum, KeyImage, Report, ReportVersion, Screenshot
from glioscope_reporting.reports.pdf import PdfInput, render_pdf
from glioscope_reporting.reports.refresh import refresh_sections
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.schemas import (
    KEY_IMAGE_NAMES,
    SECTION_NAMES,
    CreateReport,
    DiffOut,
    ModelInfo,
    RefreshSegmentation,
    ReportOut,
    SectionDiff,
    Sections,
    VersionOut,
)
from glioscope_reporting.settings import Settings

logger = logging.getLogger("glioscope.reporting")

PayloadT = TypeVar("PayloadT", bound=BaseModel)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIGNING_ROLE = "radiologist"


@dataclass(frozen=True)
class Identity:
    """The end user on whose behalf the gateway calls, from the verified internal identity token."""

    user: str | None
    role: str | None

    def require_user(self) -> str:
        if not self.user:
            raise InvalidInput("a user identity is required for this change")
        return self.user


def parse_payload(raw: str | bytes, schema: type[PayloadT] = CreateReport) -> PayloadT:  # type: ignore[assignment]
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"payload is not valid JSON: {exc}") from exc
    try:
        return schema.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UnprocessableInput(f"invalid payload: {problems}") from exc


def check_png(name: str, data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"image {name!r} exceeds {max_bytes} bytes")
    if not data.startswith(PNG_MAGIC):
        raise InvalidInput(f"image {name!r} is not a PNG")
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.verify()
        with PILImage.open(io.BytesIO(data)) as img:  # verify() does not decode: load the pixels too
            img.load()
    except Exception as exc:  # Pillow raises many types for broken files
        raise InvalidInput(f"image {name!r} is not a readable PNG") from exc
    return data


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
        check_png(f"key image {name}", data, max_bytes)
        named[name] = data
    return [(n, named[n]) for n in KEY_IMAGE_NAMES if n in named]


def _ai_map(value: bool) -> dict[str, bool]:
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


class ReportService:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.session_factory = session_factory

    # ------------------------------------------------------------------------------------- helpers

    def _out(self, repo: ReportRepository, report: Report) -> ReportOut:
        return to_out(report, repo.addenda(report.id), repo.screenshots(report.id))

    def _load(self, repo: ReportRepository, report_id: str, for_update: bool = False) -> Report:
        report = repo.get(report_id, for_update=for_update)
        if report is None:
            raise NotFound(f"no report {report_id}")
        return report

    def _llm_config(self) -> LlmConfig | None:
        s = self.settings
        if not s.llm_url or not s.llm_model:
            return None
        key = s.llm_api_key.get_secret_value() if s.llm_api_key else None
        return LlmConfig(url=s.llm_url, model=s.llm_model, api_key=key, timeout_s=s.llm_timeout_s)

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
            ai_sections=_ai_map(ai),
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

    def get(self, report_id: str) -> ReportOut:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            return self._out(repo, self._load(repo, report_id))

    def list(self, study_instance_uid: str | None) -> list[ReportOut]:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            return [self._out(repo, r) for r in repo.list(study_instance_uid)]

    # ------------------------------------------------------------------------------------- versions

    def versions(self, report_id: str) -> list[VersionOut]:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            self._load(repo, report_id)
            return [
                VersionOut(
                    version=v.version, created_at=v.created_at, author=v.author, role=v.role, action=v.action,
                    sections=Sections.model_validate(v.sections), ai_sections=v.ai_sections,  # type: ignore[arg-type]
                )
                for v in repo.versions(report_id)
            ]

    def diff(self, report_id: str, from_version: int, to_version: int) -> DiffOut:
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            self._load(repo, report_id)
            a, b = repo.version(report_id, from_version), repo.version(report_id, to_version)
            if a is None or b is None:
                missing = from_version if a is None else to_version
                raise NotFound(f"report {report_id} has no version {missing}")
            diffs = []
            for name in SECTION_NAMES:
                before, after = str(a.sections.get(name, "")), str(b.sections.get(name, ""))
                lines = difflib.unified_diff(
                    before.splitlines(keepends=True) or [""],
                    after.splitlines(keepends=True) or [""],
                    fromfile=f"v{from_version}/{name}",
                    tofile=f"v{to_version}/{name}",
                    lineterm="\n",
                )
                text_diff = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
                diffs.append(SectionDiff(section=name, changed=before != after, diff=text_diff if before != after else ""))
            return DiffOut(report_id=report_id, from_version=from_version, to_version=to_version, sections=diffs)

    # ------------------------------------------------------------------------------------- changes

    def edit_section(self, report_id: str, section: str, new_text: str, identity: Identity) -> ReportOut:
        if section not in SECTION_NAMES:
            raise NotFound(f"no section {section!r}; sections are {', '.join(SECTION_NAMES)}")
        user = identity.require_user()
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id, for_update=True)
            if report.status == "final":
                raise Conflict("the report is signed: add an addendum instead (POST /api/reports/{id}/addenda)")
            to_review = list(report.review_sections or [])
            if report.sections.get(section) == new_text:
                if section not in to_review:
                    return self._out(repo, report)  # no change, no version
                # the clinician reviewed the section and keeps its text as it is
                report.review_sections = [name for name in to_review if name != section]
                report.author = user
                self._new_version(repo, report, f"reviewed:{section}", identity)
                return self._out(repo, report)
            report.sections = {**report.sections, section: new_text}
            report.review_sections = [name for name in to_review if name != section]
            ai = {**_ai_map(False), **(report.ai_sections or {}), section: False}
            report.ai_sections = ai
            report.ai_drafted = any(ai.values())
            report.author = user
            self._new_version(repo, report, f"edit:{section}", identity)
            return self._out(repo, report)

    def sign(
        self, report_id: str, identity: Identity, display_name: str | None, latest_segmentation_version: int | None = None
    ) -> ReportOut:
        """`latest_segmentation_version`: the newest SEG version of the study (the gateway knows it); a report
        that describes an older one is stale and is not signed (409), nor one with sections to review."""
        user = identity.require_user()
        if identity.role != SIGNING_ROLE:
            raise Forbidden(f"only the role {SIGNING_ROLE!r} may sign a report (caller's role: {identity.role!r})")
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id, for_update=True)
            if report.status == "final":
                raise Conflict(f"report already signed by {report.signed_by} at {report.signed_at:%Y-%m-%d %H:%M} UTC")
            described = int((report.segmentation or {}).get("version", 1))
            if latest_segmentation_version is not None and latest_segmentation_version > described:
                raise Conflict(f"the report describes segmentation version {described}, but version "
                               f"{latest_segmentation_version} is newer: wait until the report follows it")
            if report.review_sections:
                raise Conflict("the numbers changed with the new segmentation: review (edit and save) the sections "
                               + ", ".join(report.review_sections) + " before signing")
            report.status = "final"
            # The signer is the verified user; a display name the radiologist gives only precedes it.
            shown = (display_name or "").strip()
            report.signed_by = (f"{shown} ({user})" if shown and shown != user else user)[:128]
            report.signed_role = identity.role
            report.signed_at = utcnow()
            self._new_version(repo, report, "signed", identity)
        return self._after_final_change(report_id)

    def add_addendum(self, report_id: str, addendum_text: str, identity: Identity) -> ReportOut:
        user = identity.require_user()
        if identity.role != SIGNING_ROLE:
            raise Forbidden(f"only the role {SIGNING_ROLE!r} may add an addendum to a signed report")
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id, for_update=True)
            if report.status != "final":
                raise Conflict("the report is not signed yet: edit its sections instead")
            self._new_version(repo, report, "addendum", identity)
            session.add(
                Addendum(
                    report_id=report.id, version=report.version, created_at=report.updated_at, author=user[:128],
                    role=identity.role, text=addendum_text,
                )
            )
        return self._after_final_change(report_id)

    def _after_final_change(self, report_id: str) -> ReportOut:
        if self.settings.store_on_sign:
            try:
                self.export(report_id)
            except UpstreamUnavailable as exc:  # signed anyway; the error is on the report, export again later
                logger.warning("storing report %s to the PACS failed: %s", report_id, exc)
        return self.get(report_id)

    def add_screenshots(
        self, report_id: str, images: list[tuple[str, bytes]], captions: list[str], identity: Identity
    ) -> ReportOut:
        if not images:
            raise InvalidInput("no screenshot given (multipart field 'screenshots')")
        checked = [check_png(f"screenshot {name or i + 1}", data, self.settings.max_key_image_bytes) for i, (name, data) in enumerate(images)]
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id, for_update=True)
            if report.status == "final":
                raise Conflict("the report is signed: screenshots can no longer be added")
            existing = repo.screenshots(report_id)
            if len(existing) + len(checked) > self.settings.max_screenshots:
                raise PayloadTooLarge(f"at most {self.settings.max_screenshots} screenshots per report")
            start = max((s.position for s in existing), default=-1) + 1
            for i, png in enumerate(checked):
                session.add(
                    Screenshot(
                        report_id=report_id, position=start + i, caption=(captions[i] if i < len(captions) else "")[:256],
                        author=identity.user, created_at=utcnow(), png=png,
                    )
                )
            report.updated_at = utcnow()
            session.flush()
            return self._out(repo, report)

    # ------------------------------------------------------------------------------------- outputs

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

    def dicom_objects(self, report_id: str) -> tuple[bytes, bytes, dicom_export.DicomUids, int]:
        """(Encapsulated PDF, TID 1500 SR, their UIDs, version) of the report's current version."""
        data = self._pdf_input(report_id)
        segmentation = self.get(report_id).segmentation  # the SEG and source series the SR references
        pdf = render_pdf(data, self.settings.pdf_image_max_px)
        final = data.status == "final"
        common = dict(
            report_id=data.report_id, version=data.version, study_instance_uid=data.study_instance_uid,
            patient=data.patient, study=data.study,
        )
        pdf_dcm = dicom_export.encapsulated_pdf(pdf, verified=final, **common)  # type: ignore[arg-type]
        sr_dcm = dicom_export.measurement_report(
            data.measurements, model=data.model, final=final, verifying_observer=data.signed_by,
            segmentation=segmentation, **common,  # type: ignore[arg-type]
        )
        return pdf_dcm, sr_dcm, dicom_export.uids_for(data.report_id, data.version), data.version

    def export(self, report_id: str) -> ReportOut:
        """Store the Encapsulated PDF and the SR of the current version in the PACS (STOW-RS). Same version,
        same SOP Instance UIDs: a retry adds nothing (the PACS keeps the first copy, OverwriteInstances false)."""
        pdf_dcm, sr_dcm, uids, version = self.dicom_objects(report_id)
        record: dict[str, object] = {
            "version": version,
            "pdf_sop_instance_uid": uids.pdf_sop_instance_uid,
            "sr_sop_instance_uid": uids.sr_sop_instance_uid,
            "pdf_series_instance_uid": uids.pdf_series_instance_uid,
            "sr_series_instance_uid": uids.sr_series_instance_uid,
            "stored_at": None,
            "error": None,
        }
        study_uid = self.get(report_id).study_instance_uid
        error: UpstreamUnavailable | None = None
        client = make_dicomweb(self.settings.dicomweb_url, auth=self.settings.orthanc_auth)
        try:
            result = client.store_instances([pdf_dcm, sr_dcm], study_uid)
            if result.failed_sop_instance_uids:
                error = UpstreamUnavailable(f"the PACS refused {result.failed_sop_instance_uids}: {result.warnings}")
        except (UpstreamUnavailable, InvalidInput, Conflict) as exc:
            error = UpstreamUnavailable(f"storing to the PACS failed: {exc.detail}")
        finally:
            if isinstance(client, HttpDicomWeb):
                client.close()
        if error is None:
            record["stored_at"] = datetime.now(UTC).isoformat()
        else:
            record["error"] = error.detail[:500]
        with session_scope(self.session_factory) as session:
            repo = ReportRepository(session)
            report = self._load(repo, report_id, for_update=True)
            report.export = record
            out = self._out(repo, report)
        if error is not None:
            raise error
        return out

    def ping(self) -> None:
        with session_scope(self.session_factory) as session:
            session.execute(text("SELECT 1 FROM reporting_reports LIMIT 1"))


__all__ = ["Identity", "ReportService", "check_key_images", "check_png", "parse_payload"]
