"""The HTTP base of the DICOMweb and Orthanc REST clients: a persistent httpx client, retries (tenacity) on
transport errors, 429 and 5xx, and the mapping of HTTP errors to Glioscope's errors."""

from __future__ import annotations

from typing import Any

import httpx
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

__all__ = ["OrthancAuth"]


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_Retryable, httpx.TransportError))


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
