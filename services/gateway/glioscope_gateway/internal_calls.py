"""The caller's identity, signed for one internal service and one request (glioscope_common.internal_identity)."""

from __future__ import annotations

from typing import Literal

from glioscope_common.internal_identity import bearer_header
from glioscope_gateway.auth.principal import Principal
from glioscope_gateway.settings import GatewaySettings

ISSUER = "gateway"


def identity_headers(settings: GatewaySettings, principal: Principal,
                     audience: Literal["reporting", "nifti"]) -> dict[str, str]:
    return bearer_header(settings.internal_key, audience=audience, subject=principal.subject,
                         role=principal.role.value, issuer=ISSUER)
