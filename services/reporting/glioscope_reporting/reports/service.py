"""Reports: create (idempotent per study and job), read, edit with versions, diff, sign, addenda,
screenshots, PDF, and the DICOM export (Encapsulated PDF + TID 1500 SR) to the PACS. No FastAPI here.

ReportService puts together the parts beside it: validation (identity, payload, PNGs), service_base
(loading, the API view, versions), drafting (create, refresh on a new segmentation), workflow
(versions, diff, edits, sign-off, addenda, screenshots), rendering (PDF) and pacs_export (PDF + SR
to the PACS)."""

from __future__ import annotations

from glioscope_reporting.reports.drafting import ReportDrafting
from glioscope_reporting.reports.validation import Identity, check_key_images, check_png, parse_payload
from glioscope_reporting.reports.workflow import ReportWorkflow


class ReportService(ReportDrafting, ReportWorkflow):
    """The reporting service's one entry point for the routes and the app factory."""


__all__ = ["Identity", "ReportService", "check_key_images", "check_png", "parse_payload"]
