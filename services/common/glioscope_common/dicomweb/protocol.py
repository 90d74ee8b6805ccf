"""The DICOMweb protocol the services program against (`DicomWeb`), the STOW-RS result, media types and
DICOM JSON values (PS3.18 F.2)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pydicom
from pydicom.datadict import tag_for_keyword

__all__ = ["DICOM_JSON", "MULTIPART_DICOM", "MULTIPART_DICOM_ANY", "DicomWeb", "StoreResult", "dicom_json_value"]

DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
# transfer-syntax=* asks the server for the stored transfer syntax (no transcoding).
MULTIPART_DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


@dataclass
class StoreResult:
    stored_sop_instance_uids: list[str] = field(default_factory=list)
    failed_sop_instance_uids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def merge(self, other: "StoreResult") -> None:
        self.stored_sop_instance_uids += other.stored_sop_instance_uids
        self.failed_sop_instance_uids += other.failed_sop_instance_uids
        self.warnings += other.warnings


@runtime_checkable
class DicomWeb(Protocol):
    def store_instances(self, instances: Iterable[bytes], study_instance_uid: str | None = None) -> StoreResult: ...

    def search_studies(self, **filters: str) -> list[dict]: ...

    def search_series(self, study_instance_uid: str) -> list[dict]: ...

    def search_instances(self, study_instance_uid: str, series_instance_uid: str) -> list[dict]: ...

    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str) -> list[dict]: ...

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list[pydicom.Dataset]: ...

    def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> pydicom.Dataset: ...


# --------------------------------------------------------------------------------------------- DICOM JSON


def _tag_key(tag: str) -> str:
    """'0020000D', '(0020,000D)', '0020,000d' or a keyword ('StudyInstanceUID') -> '0020000D'."""
    cleaned = re.sub(r"[(), ]", "", tag)
    if re.fullmatch(r"[0-9A-Fa-f]{8}", cleaned):
        return cleaned.upper()
    number = tag_for_keyword(tag)
    if number is None:
        raise ValueError(f"unknown DICOM tag or keyword: {tag!r}")
    return f"{number:08X}"


def dicom_json_value(item: dict, tag: str) -> object | None:
    """The value of `tag` in a DICOM JSON object: a scalar when the element has one value, a list when
    it has several, None when absent or empty. Person names give their Alphabetic form; sequences give
    a list of DICOM JSON objects."""
    element = item.get(_tag_key(tag))
    if not element:
        return None
    values = element.get("Value")
    if not values:
        return None
    if element.get("vr") == "PN":
        values = [v.get("Alphabetic") if isinstance(v, dict) else v for v in values]
    if element.get("vr") == "SQ":
        return values
    return values[0] if len(values) == 1 else values
