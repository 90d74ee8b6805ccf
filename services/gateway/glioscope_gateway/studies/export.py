"""De-identified export of a study (DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile).

Orthanc does the de-identification (`POST /studies/{id}/anonymize`: new UIDs, patient identifiers
replaced, dates and other Basic Profile attributes emptied or removed, PatientIdentityRemoved YES,
DeidentificationMethod set, private tags dropped). The anonymised copy is downloaded as a zip
(`GET /studies/{copy}/archive`) and deleted at once; the watcher ignores such copies (Orthanc marks
them with the `AnonymizedFrom` metadata).
"""

from __future__ import annotations

import logging

from glioscope_common.dicomweb import OrthancRest
from glioscope_common.errors import NotFound, UpstreamUnavailable

logger = logging.getLogger("glioscope.gateway.export")

# The DICOM edition whose Table E.1-1 Orthanc applies (Orthanc >= 1.9.4 knows 2021b and later).
ANONYMIZE_REQUEST = {
    "DicomVersion": "2021b",
    "KeepPrivateTags": False,
    "Synchronous": True,
}


def export_deidentified(orthanc: OrthancRest, study_instance_uid: str) -> bytes:
    """A zip of the study de-identified by Orthanc; the anonymised copy is removed from the PACS."""
    source = orthanc.find_study(study_instance_uid)
    if source is None:
        raise NotFound("the study is not in the PACS")
    response = orthanc._request("POST", f"/studies/{source}/anonymize", json=ANONYMIZE_REQUEST, timeout=600)
    copy = response.json().get("ID")
    if not copy:
        raise UpstreamUnavailable("the PACS did not return the de-identified copy")
    try:
        archive = orthanc._request("GET", f"/studies/{copy}/archive", timeout=600)
        return archive.content
    finally:
        try:
            orthanc.delete_study(copy)
        except Exception:
            logger.warning("could not delete a de-identified copy from the PACS", extra={"orthanc_id": copy})
