from __future__ import annotations

from glioscope_common.errors import Forbidden, GlioscopeError

__all__ = ["Forbidden", "RateLimited"]


class RateLimited(GlioscopeError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
