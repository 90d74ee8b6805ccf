"""PACS export: the report's current version as an Encapsulated PDF and a TID 1500 SR
(reports/dicom_export.py), stored to the PACS over STOW-RS, with the outcome kept on the report."""

from __future__ import annotations

from datetime import UTC, datetime

from glioscope_common.db import session_scope
from glioscope_common.dicomweb.client import HttpDicomWeb, make_dicomweb
from glioscope_common.errors import Conflict, InvalidInput, UpstreamUnavailable
from glioscope_reporting.reports import dicom_export
from glioscope_reporting.reports.pdf import render_pdf
from glioscope_reporting.reports.rendering import ReportRendering
from glioscope_reporting.reports.repository import ReportRepository
from glioscope_reporting.reports.schemas import ReportOut


class ReportExport(ReportRendering):
    """The DICOM objects of the current version and their STOW-RS to the PACS."""

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
