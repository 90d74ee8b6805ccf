"""DICOMweb over HTTP (`HttpDicomWeb`: STOW-RS in batches, QIDO-RS, WADO-RS) and `make_dicomweb`, which picks
the HTTP client or the folder store by URL."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pydicom

from glioscope_common.dicomweb.files import FileDicomWeb
from glioscope_common.dicomweb.multipart import encode_multipart_related, parse_multipart_related
from glioscope_common.dicomweb.protocol import DICOM_JSON, MULTIPART_DICOM_ANY, DicomWeb, StoreResult, dicom_json_value
from glioscope_common.dicomweb.transport import OrthancAuth, _HttpBase
from glioscope_common.errors import NotFound

__all__ = ["HttpDicomWeb", "make_dicomweb"]

STOW_MAX_INSTANCES = 50
STOW_MAX_BYTES = 64 * 1024 * 1024


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


def make_dicomweb(url: str, **kwargs: Any) -> DicomWeb:
    """`http(s)://...` -> HttpDicomWeb, `file:///path` or a plain path -> FileDicomWeb."""
    if url.startswith(("http://", "https://")):
        return HttpDicomWeb(url, **kwargs)
    return FileDicomWeb(Path(url.removeprefix("file://")))
