"""The DICOMweb client the gateway and the worker share (STOW-RS, QIDO-RS, WADO-RS), plus Orthanc's REST API.

`HttpDicomWeb` talks to any DICOMweb server (Orthanc's plugin in practice); `FileDicomWeb` implements the
same protocol on a folder (offline use, unit tests). Both speak DICOM JSON (PS3.18 F.2) for search results
and metadata and return `pydicom.Dataset` for retrieved instances.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import httpx
import pydicom
from pydicom.datadict import tag_for_keyword
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from glioscope_common.errors import (
    Conflict,
    GlioscopeError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpstreamUnavailable,
)

__all__ = [
    "DicomWeb",
    "FileDicomWeb",
    "HttpDicomWeb",
    "OrthancRest",
    "StoreResult",
    "dicom_json_value",
    "encode_multipart_related",
    "make_dicomweb",
    "parse_multipart_related",
]

DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
# transfer-syntax=* asks the server for the stored transfer syntax (no transcoding).
MULTIPART_DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'

STOW_MAX_INSTANCES = 50
STOW_MAX_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------------------------- protocol


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


def _uid_of(ds_bytes: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(ds_bytes), stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


# --------------------------------------------------------------------------------------------- multipart


def encode_multipart_related(parts: Iterable[bytes], content_type: str = "application/dicom") -> tuple[bytes, str]:
    """Body and Content-Type header of a multipart/related message (PS3.18 8.6.1.2)."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
    for part in parts:
        chunks += [head, part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{content_type}"; boundary={boundary}'


def _boundary(content_type: str) -> str:
    m = re.search(r'boundary\s*=\s*("([^"]+)"|[^;\s]+)', content_type, re.IGNORECASE)
    if not m:
        raise UpstreamUnavailable(f"multipart response without a boundary: {content_type!r}")
    return m.group(2) or m.group(1)


def parse_multipart_related(body: bytes, content_type: str) -> list[bytes]:
    """Split a multipart/related body into its part payloads, in one linear pass (find + slice)."""
    delimiter = b"--" + _boundary(content_type).encode()
    view = memoryview(body)
    parts: list[bytes] = []
    pos = body.find(delimiter)
    if pos < 0:
        return parts
    sep = b"\r\n" + delimiter
    while True:
        pos += len(delimiter)
        if body[pos : pos + 2] == b"--":  # closing delimiter
            break
        header_end = body.find(b"\r\n\r\n", pos)
        if header_end < 0:
            break
        start = header_end + 4
        end = body.find(sep, start)
        if end < 0:  # tolerate a missing closing delimiter
            parts.append(bytes(view[start:]))
            break
        parts.append(bytes(view[start:end]))
        pos = end + 2
    return parts


# --------------------------------------------------------------------------------------------- HTTP


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_Retryable, httpx.TransportError))


T = TypeVar("T")


OrthancAuth = tuple[str, str] | httpx.Auth | None


class _HttpBase:
    """A persistent httpx client, retries (tenacity) on transport errors and 5xx, error mapping.

    `auth`: the server's credentials ((username, password) for HTTP basic authentication, as Orthanc
    wants them; `CommonSettings.orthanc_auth`). Never put them in `base_url`: URLs end up in messages."""

    service = "upstream"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
        attempts: int = 3,
        retry_wait: float = 0.2,
        auth: OrthancAuth = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_client = client is None
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers=headers or {},
            limits=httpx.Limits(max_keepalive_connections=8, max_connections=16),
        )
        if client is not None and headers:
            self.client.headers.update(headers)
        if auth is not None:
            self.client.auth = auth
        self.attempts = attempts
        self.retry_wait = retry_wait

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else self.base_url + path

        def once() -> httpx.Response:
            response = self.client.request(method, url, **kwargs)
            if response.status_code >= 500 or response.status_code == 429:
                raise _Retryable(response)
            return response

        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.retry_wait, max=5),
                retry=retry_if_exception(_is_retryable),
                reraise=True,
            ):
                with attempt:
                    response = once()
        except _Retryable as e:
            raise UpstreamUnavailable(
                f"{self.service} {method} {path}: HTTP {e.response.status_code} {e.response.text[:200]}"
            ) from e
        except httpx.TransportError as e:
            raise UpstreamUnavailable(f"{self.service} unreachable at {self.base_url}: {type(e).__name__}: {e}") from e
        if response.status_code in (401, 403):
            # Our own credentials (or address) refused: a configuration fault, not the caller's.
            raise UpstreamUnavailable(
                f"{self.service} {method} {path}: HTTP {response.status_code}, access refused "
                "(check GLIOSCOPE_ORTHANC_USERNAME and GLIOSCOPE_ORTHANC_PASSWORD)"
            )
        if response.status_code >= 400:
            detail = f"{self.service} {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            error: type[GlioscopeError] = {
                404: NotFound,
                409: Conflict,
                413: PayloadTooLarge,
                415: UnsupportedMediaType,
            }.get(response.status_code, InvalidInput)
            raise error(detail)
        return response


class HttpDicomWeb(_HttpBase):
    """DICOMweb over HTTP. `base_url` is the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web."""

    service = "DICOMweb"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
        attempts: int = 3,
        retry_wait: float = 0.2,
        max_instances_per_request: int = STOW_MAX_INSTANCES,
        max_bytes_per_request: int = STOW_MAX_BYTES,
        stow_concurrency: int = 1,
        auth: OrthancAuth = None,
    ) -> None:
        super().__init__(
            base_url, timeout=timeout, headers=headers, client=client, attempts=attempts, retry_wait=retry_wait, auth=auth
        )
        self.max_instances_per_request = max_instances_per_request
        self.max_bytes_per_request = max_bytes_per_request
        # STOW-RS requests in flight at once: the PACS stores one batch while the next is sent.
        self.stow_concurrency = max(1, stow_concurrency)

    # STOW-RS
    def _batches(self, instances: Iterable[bytes]) -> Iterator[list[bytes]]:
        batch: list[bytes] = []
        size = 0
        for inst in instances:
            if batch and (len(batch) >= self.max_instances_per_request or size + len(inst) > self.max_bytes_per_request):
                yield batch
                batch, size = [], 0
            batch.append(inst)
            size += len(inst)
        if batch:
            yield batch

    def store_instances(self, instances: Iterable[bytes], study_instance_uid: str | None = None) -> StoreResult:
        """STOW-RS in batches, up to `stow_concurrency` requests in flight.

        `instances` may be a lazy iterable: each batch is sent as soon as it is complete, so a caller
        that validates while yielding overlaps its work with the PACS storing the earlier batches.
        An exception raised by the iterable propagates after the batches in flight have finished."""
        path = f"/studies/{study_instance_uid}" if study_instance_uid else "/studies"

        def store(batch: list[bytes]) -> StoreResult:
            body, content_type = encode_multipart_related(batch)
            response = self._request(
                "POST", path, content=body, headers={"Content-Type": content_type, "Accept": DICOM_JSON}
            )
            return _store_result(response)

        result = StoreResult()
        if self.stow_concurrency == 1:
            for batch in self._batches(instances):
                result.merge(store(batch))
            return result
        with ThreadPoolExecutor(max_workers=self.stow_concurrency, thread_name_prefix="stow") as pool:
            pending = []
            try:
                for batch in self._batches(instances):
                    pending.append(pool.submit(store, batch))
            except BaseException:
                for future in pending:
                    future.cancel()  # batches not yet sent stay unsent
                raise
            for future in pending:
                result.merge(future.result())
        return result

    # QIDO-RS
    def _search(self, path: str, params: dict[str, str] | None = None) -> list[dict]:
        response = self._request("GET", path, params=params or {}, headers={"Accept": DICOM_JSON})
        if response.status_code == 204 or not response.content:
            return []
        return list(response.json())

    def search_studies(self, **filters: str) -> list[dict]:
        return self._search("/studies", filters)

    def search_series(self, study_instance_uid: str, **filters: str) -> list[dict]:
        return self._search(f"/studies/{study_instance_uid}/series", filters)

    def search_instances(self, study_instance_uid: str, series_instance_uid: str, **filters: str) -> list[dict]:
        return self._search(f"/studies/{study_instance_uid}/series/{series_instance_uid}/instances", filters)

    # WADO-RS
    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str) -> list[dict]:
        return self._search(f"/studies/{study_instance_uid}/series/{series_instance_uid}/metadata")

    def retrieve_study_metadata(self, study_instance_uid: str) -> list[dict]:
        return self._search(f"/studies/{study_instance_uid}/metadata")

    def _retrieve(self, path: str) -> list[pydicom.Dataset]:
        response = self._request("GET", path, headers={"Accept": MULTIPART_DICOM_ANY})
        parts = parse_multipart_related(response.content, response.headers.get("content-type", ""))
        return [pydicom.dcmread(io.BytesIO(p)) for p in parts]

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list[pydicom.Dataset]:
        return self._retrieve(f"/studies/{study_instance_uid}/series/{series_instance_uid}")

    def retrieve_study(self, study_instance_uid: str) -> list[pydicom.Dataset]:
        return self._retrieve(f"/studies/{study_instance_uid}")

    def retrieve_instance(
        self, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str
    ) -> pydicom.Dataset:
        datasets = self._retrieve(
            f"/studies/{study_instance_uid}/series/{series_instance_uid}/instances/{sop_instance_uid}"
        )
        if not datasets:
            raise NotFound(f"instance {sop_instance_uid} not found")
        return datasets[0]


def _store_result(response: httpx.Response) -> StoreResult:
    result = StoreResult()
    if not response.content:
        return result
    try:
        payload = response.json()
    except json.JSONDecodeError:
        result.warnings.append(f"unparsed STOW response: {response.text[:200]}")
        return result
    for item in dicom_json_value(payload, "00081199") or []:  # ReferencedSOPSequence
        uid = dicom_json_value(item, "00081155")
        if uid:
            result.stored_sop_instance_uids.append(str(uid))
        warning = dicom_json_value(item, "00081196")  # WarningReason
        if warning:
            result.warnings.append(f"{uid}: warning {warning}")
    for item in dicom_json_value(payload, "00081198") or []:  # FailedSOPSequence
        uid = dicom_json_value(item, "00081155")
        result.failed_sop_instance_uids.append(str(uid))
        reason = dicom_json_value(item, "00081197")  # FailureReason
        if reason is not None:
            result.warnings.append(f"{uid}: failure reason {reason}")
    return result


# --------------------------------------------------------------------------------------------- Orthanc REST


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


# --------------------------------------------------------------------------------------------- files


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


def make_dicomweb(url: str, **kwargs: Any) -> DicomWeb:
    """`http(s)://...` -> HttpDicomWeb, `file:///path` or a plain path -> FileDicomWeb."""
    if url.startswith(("http://", "https://")):
        return HttpDicomWeb(url, **kwargs)
    return FileDicomWeb(Path(url.removeprefix("file://")))
