"""HTTP clients for the NIfTI and reporting services (a signed identity per request, retries, one error type)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from glioscope_common.errors import UnprocessableInput, UpstreamUnavailable
from glioscope_common.internal_identity import IdentityAuth

WORKER_SUBJECT = "inference-worker"

_retry = retry(
    retry=retry_if_exception_type(UpstreamUnavailable),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.5, max=5),
    reraise=True,
)


def _check(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 500:
        raise UpstreamUnavailable(f"{what} answered {response.status_code}")
    if response.status_code >= 400:
        raise UnprocessableInput(f"{what} refused the request ({response.status_code}): {response.text[:300]}")
    return response


class ServiceClient:
    audience: str = ""

    def __init__(self, base_url: str, key: str, timeout_s: float = 120) -> None:
        auth = IdentityAuth(key, audience=self.audience, subject=WORKER_SUBJECT, role="service", issuer="worker")
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, auth=auth)

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"{what} is unreachable") from exc
        return _check(response, what)

    def close(self) -> None:
        self._client.close()


class NiftiClient(ServiceClient):
    audience = "nifti"

    @_retry
    def put_file(self, path: str, content: bytes) -> dict[str, Any]:
        response = self._send(
            "the NIfTI service", "PUT", f"/api/nifti/files/{path}", content=content,
            headers={"content-type": "application/gzip"},
        )
        return response.json()  # type: ignore[no-any-return]


class ReportingClient(ServiceClient):
    audience = "reporting"

    @_retry
    def create_report(self, payload: dict[str, Any], key_images: dict[str, bytes]) -> dict[str, Any]:
        files = [("key_images", (f"{name}.png", png, "image/png")) for name, png in key_images.items()]
        response = self._send(
            "the reporting service", "POST", "/api/reports", data={"payload": json.dumps(payload)}, files=files
        )
        return response.json()  # type: ignore[no-any-return]

    @_retry
    def refresh_segmentation(self, report_id: str, payload: dict[str, Any], key_images: dict[str, bytes]) -> dict[str, Any]:
        """The report follows a new SEG version (PUT /api/reports/{id}/segmentation; idempotent per version)."""
        files = [("key_images", (f"{name}.png", png, "image/png")) for name, png in key_images.items()]
        response = self._send(
            "the reporting service", "PUT", f"/api/reports/{report_id}/segmentation",
            data={"payload": json.dumps(payload)}, files=files or None,
        )
        return response.json()  # type: ignore[no-any-return]
