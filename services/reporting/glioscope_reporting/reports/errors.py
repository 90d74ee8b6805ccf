"""Errors of the reports domain that the common hierarchy lacks (mapped by the same JSON handler)."""

from __future__ import annotations

from glioscope_common.errors import GlioscopeError


class Forbidden(GlioscopeError):
    """The caller is known but its role may not do this (e.g. sign without the radiologist role).
    Candidate for glioscope_common.errors."""

    status_code = 403
    code = "forbidden"
