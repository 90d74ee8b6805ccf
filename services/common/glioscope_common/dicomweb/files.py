"""The DicomWeb protocol on a folder (`FileDicomWeb`): offline use and unit tests."""

from __future__ import annotations

import fnmatch
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pydicom

from glioscope_common.dicomweb.protocol import StoreResult, dicom_json_value
from glioscope_common.errors import InvalidInput, NotFound

__all__ = ["FileDicomWeb"]


def _uid_of(ds_bytes: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(ds_bytes), stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


_STUDY_TAGS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferringPhysicianName",
)  # fmt: skip
_SERIES_TAGS = (
    "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate",
    "SeriesTime", "BodyPartExamined", "ProtocolName",
)  # fmt: skip
_INSTANCE_TAGS = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows",
    "Columns", "NumberOfFrames",
)  # fmt: skip


def _subset_json(ds: pydicom.Dataset, keywords: Sequence[str]) -> dict:
    subset = pydicom.Dataset()
    for kw in keywords:
        if kw in ds:
            subset[kw] = ds[kw]
    return subset.to_json_dict()


def _matches(item: dict, filters: dict[str, str]) -> bool:
    for key, wanted in filters.items():
        if key.lower() in ("includefield", "limit", "offset", "fuzzymatching"):
            continue
        value = dicom_json_value(item, key)
        values = value if isinstance(value, list) else [value]
        if not any(v is not None and fnmatch.fnmatchcase(str(v), str(wanted)) for v in values):
            return False
    return True


class FileDicomWeb:
    """The DicomWeb protocol on a folder: instances live in `root/<study>/<series>/<sop>.dcm`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, study: str, series: str | None = None, sop: str | None = None) -> Path:
        parts = [p for p in (study, series) if p]
        for p in parts + ([sop] if sop else []):
            if not re.fullmatch(r"[0-9.]+", p):
                raise InvalidInput(f"not a DICOM UID: {p!r}")
        path = self.root.joinpath(*parts)
        return path / f"{sop}.dcm" if sop else path

    def store_instances(self, instances: Iterable[bytes], study_instance_uid: str | None = None) -> StoreResult:
        result = StoreResult()
        for data in instances:
            try:
                study, series, sop = _uid_of(data)
            except Exception as e:  # noqa: BLE001 - an unreadable instance fails alone, as in STOW
                result.warnings.append(f"unreadable instance: {e}")
                result.failed_sop_instance_uids.append("")
                continue
            if study_instance_uid and study != study_instance_uid:
                result.failed_sop_instance_uids.append(sop)
                result.warnings.append(f"{sop}: belongs to study {study}, not {study_instance_uid}")
                continue
            path = self._path(study, series, sop)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            result.stored_sop_instance_uids.append(sop)
        return result

    def _first_header(self, folder: Path) -> pydicom.Dataset | None:
        for f in sorted(folder.rglob("*.dcm")):
            return pydicom.dcmread(f, stop_before_pixels=True)
        return None

    def _dirs(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def search_studies(self, **filters: str) -> list[dict]:
        results = []
        for study_dir in self._dirs(self.root):
            ds = self._first_header(study_dir)
            if ds is None:
                continue
            item = _subset_json(ds, _STUDY_TAGS)
            series_dirs = self._dirs(study_dir)
            headers = [h for h in (self._first_header(s) for s in series_dirs) if h is not None]
            modalities = sorted({str(h.Modality) for h in headers if "Modality" in h})
            item["00080061"] = {"vr": "CS", "Value": modalities}  # ModalitiesInStudy
            item["00201206"] = {"vr": "IS", "Value": [len(series_dirs)]}  # NumberOfStudyRelatedSeries
            item["00201208"] = {"vr": "IS", "Value": [sum(len(list(s.glob("*.dcm"))) for s in series_dirs)]}
            if _matches(item, filters):
                results.append(item)
        return results

    def search_series(self, study_instance_uid: str, **filters: str) -> list[dict]:
        study_dir = self._path(study_instance_uid)
        if not study_dir.is_dir():
            return []
        results = []
        for series_dir in self._dirs(study_dir):
            ds = self._first_header(series_dir)
            if ds is None:
                continue
            item = _subset_json(ds, _SERIES_TAGS)
            item["00201209"] = {"vr": "IS", "Value": [len(list(series_dir.glob("*.dcm")))]}
            if _matches(item, filters):
                results.append(item)
        return results

    def search_instances(self, study_instance_uid: str, series_instance_uid: str, **filters: str) -> list[dict]:
        folder = self._path(study_instance_uid, series_instance_uid)
        items = [_subset_json(pydicom.dcmread(f, stop_before_pixels=True), _INSTANCE_TAGS) for f in sorted(folder.glob("*.dcm"))]
        return [i for i in items if _matches(i, filters)]

    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str) -> list[dict]:
        folder = self._path(study_instance_uid, series_instance_uid)
        files = sorted(folder.glob("*.dcm"))
        if not files:
            raise NotFound(f"series {series_instance_uid} not found")
        return [pydicom.dcmread(f, stop_before_pixels=True).to_json_dict() for f in files]

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list[pydicom.Dataset]:
        folder = self._path(study_instance_uid, series_instance_uid)
        files = sorted(folder.glob("*.dcm"))
        if not files:
            raise NotFound(f"series {series_instance_uid} not found")
        return [pydicom.dcmread(f) for f in files]

    def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> pydicom.Dataset:
        path = self._path(study_instance_uid, series_instance_uid, sop_instance_uid)
        if not path.exists():
            raise NotFound(f"instance {sop_instance_uid} not found")
        return pydicom.dcmread(path)
