"""Orthanc's own REST API (what DICOMweb does not cover): the change feed, study lookup and deletion, statistics."""

from __future__ import annotations

from glioscope_common.dicomweb.transport import _HttpBase

__all__ = ["OrthancRest"]


class OrthancRest(_HttpBase):
    """Orthanc's own REST API (what DICOMweb does not cover). `base_url` is Orthanc's root URL."""

    service = "Orthanc"

    def changes(self, since: int, limit: int = 100) -> tuple[list[dict], int, bool]:
        """GET /changes: (changes, last sequence number, done)."""
        payload = self._request("GET", "/changes", params={"since": since, "limit": limit}).json()
        return list(payload.get("Changes", [])), int(payload.get("Last", since)), bool(payload.get("Done", True))

    def study_dicom_uid(self, orthanc_study_id: str) -> str:
        payload = self._request("GET", f"/studies/{orthanc_study_id}").json()
        return str(payload["MainDicomTags"]["StudyInstanceUID"])

    def study(self, orthanc_study_id: str) -> dict:
        return dict(self._request("GET", f"/studies/{orthanc_study_id}").json())

    def find_study(self, study_instance_uid: str) -> str | None:
        """Orthanc's ID of the study with this StudyInstanceUID, or None."""
        payload = self._request("POST", "/tools/lookup", content=study_instance_uid.encode()).json()
        for item in payload:
            if item.get("Type") == "Study":
                return str(item["ID"])
        return None

    def delete_study(self, orthanc_study_id: str) -> None:
        self._request("DELETE", f"/studies/{orthanc_study_id}")

    def statistics(self) -> dict:
        return dict(self._request("GET", "/statistics").json())

    def system(self) -> dict:
        return dict(self._request("GET", "/system").json())
