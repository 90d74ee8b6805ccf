"""One error hierarchy for all services, mapped to JSON `{error, detail, request_id}` by `http.install_error_handlers`."""

from __future__ import annotations


class GlioscopeError(Exception):
    """Base class; `status_code` is the HTTP status the error maps to."""

    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(GlioscopeError):
    status_code = 400
    code = "invalid_input"


class UnprocessableInput(GlioscopeError):
    """Well-formed input that cannot be processed (e.g. a study without the four sequences)."""

    status_code = 422
    code = "unprocessable"


class PayloadTooLarge(GlioscopeError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(GlioscopeError):
    status_code = 415
    code = "unsupported_media_type"


class NotFound(GlioscopeError):
    status_code = 404
    code = "not_found"


class Conflict(GlioscopeError):
    status_code = 409
    code = "conflict"


class Unauthorized(GlioscopeError):
    status_code = 401
    code = "unauthorized"


class Forbidden(GlioscopeError):
    """The caller is known but its role or projects do not allow this."""

    status_code = 403
    code = "forbidden"


class UpstreamUnavailable(GlioscopeError):
    status_code = 503
    code = "upstream_unavailable"
