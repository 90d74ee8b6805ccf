"""Workflow: versions and their diff, section edits (and the review of refreshed sections),
sign-off by a radiologist, addenda to a signed report, screenshots; a signed report or a new addendum
goes to the PACS when `store_on_sign` is set."""

from __future__ import annotations

import difflib
import logging

from glioscope_common.db import session_scope, utcnow
from glioscope_common.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, UpstreamUnavailable
from glioscope_reporting.reports.models import Addendum, Screenshot
from glioscope_reporting.reports.pacs_export import ReportExport
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.schemas import SECTION_NAMES, DiffOut, ReportOut, SectionDiff, Sections, VersionOut
from glioscope_reporting.reports.service_base import ai_map
from glioscope_reporting.reports.validation import Identity, check_png

logger = logging.getLogger("glioscope.reporting")
SIGNING_ROLE = "radiologist"


class ReportWorkflow(ReportExport):
    """Versions, edits, sign-off, addenda and screenshots (exporting to the PACS after a final change)."""

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
            ai = {**ai_map(False), **(report.ai_sections or {}), section: False}
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
