"""Admission of uploads by size, decided before the request body is read.

An upload is held in memory while it is validated and stored: the request body in the API process,
its copy handed to an upload process, and the parsed instances there. Measured on the BraTS-size
demo study (72 MB), the pod's memory grows by about 5.3 bytes per upload byte. The number of
uploads does not bound that; their bytes do. So each gateway process admits uploads while the
bytes it holds stay within `upload_budget_bytes`, refuses one larger than `max_upload_bytes`
with 413 and, when the budget is taken by others, answers 503 with Retry-After, all from the
declared Content-Length, before a byte of the body is buffered. A chunked body without a length
is refused (411), since nothing would bound it before it is buffered. The chart sizes the gateway's memory limit from the budget
(charts/glioscope/values.yaml, gateway.uploadBudgetBytes). The upload route applies it
(studies/routes.py, AdmittedUploadRoute).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import Request

from glioscope_common.errors import GlioscopeError, PayloadTooLarge

RETRY_AFTER_S = 5.0


def declared_length(request: Request) -> int | None:
    """The request's Content-Length, or None (a chunked body, or a malformed header)."""
    value = request.headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


class LengthRequired(GlioscopeError):
    status_code = 411
    code = "length_required"


class UploadsBusy(GlioscopeError):
    status_code = 503
    code = "uploads_busy"

    def __init__(self, detail: str, retry_after_s: float = RETRY_AFTER_S) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class UploadAdmission:
    def __init__(self, max_upload_bytes: int, budget_bytes: int) -> None:
        if budget_bytes < max_upload_bytes:
            raise ValueError("the upload budget must hold at least one upload of max_upload_bytes")
        self.max_upload_bytes = max_upload_bytes
        self.budget_bytes = budget_bytes
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        return self._held

    @contextmanager
    def admit(self, declared_bytes: int) -> Iterator[None]:
        if declared_bytes > self.max_upload_bytes:
            raise PayloadTooLarge(f"the upload exceeds {self.max_upload_bytes} bytes")
        size = declared_bytes
        with self._lock:
            if self._held and self._held + size > self.budget_bytes:
                raise UploadsBusy("the gateway is storing other uploads; retry in a few seconds")
            self._held += size
        try:
            yield
        finally:
            with self._lock:
                self._held -= size
