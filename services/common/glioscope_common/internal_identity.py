"""Who is calling an internal service (reporting, NIfTI): a signed, short-lived token per request.

The gateway authenticates the end user and, for each request it forwards, signs a JWT (HS256 with
GLIOSCOPE_SERVICE_TOKEN as the key) that names the user, their role, the issuing service and the one
service it is meant for (`aud`), valid for `ttl_s` seconds. The worker signs its own calls the same
way with the role `service`. Reporting and NIfTI verify signature, audience and expiry and take the
identity from the verified claims only: no header can claim to be someone.

HS256 means every holder of the key can sign; the key is held by the gateway, the worker and the two
internal services only (docs/security.md, threat model). Asymmetric keys per issuer are the next step.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx
from jose import JWTError, jwt

from glioscope_common.errors import Unauthorized

ALGORITHM = "HS256"
DEFAULT_TTL_S = 60
MAX_TTL_S = 3600
ROLES = frozenset({"admin", "radiologist", "clinician", "researcher", "service"})
AUDIENCES = frozenset({"reporting", "nifti"})
CLOCK_SKEW_S = 5


@dataclass(frozen=True)
class InternalIdentity:
    subject: str  # username, "oidc:<name>", "key:<id>" or a service name; never PHI
    role: str
    issuer: str  # the service that signed: "gateway" or "worker"


def mint(key: str, *, audience: str, subject: str, role: str, issuer: str, ttl_s: int = DEFAULT_TTL_S) -> str:
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError("ttl_s out of range")
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject[:128], "role": role, "aud": audience, "iat": now, "nbf": now - CLOCK_SKEW_S,
              "exp": now + ttl_s, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, authorization: str | None, audience: str) -> InternalIdentity:
    """The identity in an `Authorization: Bearer <token>` header meant for `audience`, or Unauthorized."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token")
    token = authorization[7:].strip()
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience,
                            options={"require_exp": True, "require_iat": True, "require_aud": True,
                                     "leeway": CLOCK_SKEW_S})
    except JWTError as exc:
        raise Unauthorized("invalid or expired token") from exc
    subject, role, issuer = claims.get("sub"), claims.get("role"), claims.get("iss")
    if not isinstance(subject, str) or not subject or role not in ROLES or not isinstance(issuer, str):
        raise Unauthorized("invalid token")
    if int(claims["exp"]) - int(claims["iat"]) > MAX_TTL_S:
        raise Unauthorized("token lifetime too long")
    return InternalIdentity(subject=subject, role=str(role), issuer=issuer)


def request_identity(state: Any, key: str, authorization: str | None, audience: str) -> InternalIdentity:
    """The verified identity of a request, kept on its `state` (FastAPI's request.state) once verified."""
    found = getattr(state, "identity", None)
    if found is None:
        found = verify(key, authorization, audience)
        state.identity = found
    return found


class IdentityAuth(httpx.Auth):
    """httpx authentication that signs a fresh token for every request (retries included)."""

    def __init__(self, key: str, *, audience: str, subject: str, role: str, issuer: str,
                 ttl_s: int = DEFAULT_TTL_S) -> None:
        self._key, self._audience, self._subject, self._role, self._issuer = key, audience, subject, role, issuer
        self._ttl_s = ttl_s

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = mint(self._key, audience=self._audience, subject=self._subject, role=self._role,
                     issuer=self._issuer, ttl_s=self._ttl_s)
        request.headers["authorization"] = f"Bearer {token}"
        yield request


def bearer_header(key: str, *, audience: str, subject: str, role: str, issuer: str, ttl_s: int = DEFAULT_TTL_S) -> dict[str, str]:
    return {"authorization": "Bearer " + mint(key, audience=audience, subject=subject, role=role, issuer=issuer, ttl_s=ttl_s)}
