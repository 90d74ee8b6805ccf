"""JWTs: the gateway's own HS256 access/refresh tokens, and RS256 tokens of an external OIDC provider."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from jose import ExpiredSignatureError, JWTError, jwt

from glioscope_common.errors import Unauthorized
from glioscope_common.metrics import count_degraded
from glioscope_common.records.access import Role
from glioscope_gateway.auth.errors import Forbidden
from glioscope_gateway.auth.principal import Principal

logger = logging.getLogger("glioscope.gateway.auth")

ISSUER = "glioscope"
ACCESS = "access"
REFRESH = "refresh"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


class LocalTokens:
    """HS256 tokens signed with GLIOSCOPE_JWT_SECRET. Access tokens carry role and projects."""

    def __init__(self, secret: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._secret = secret
        self.access_ttl = timedelta(seconds=access_ttl_s)
        self.refresh_ttl = timedelta(seconds=refresh_ttl_s)

    def issue(self, kind: str, subject: str, role: Role, projects: list[str] | None) -> IssuedToken:
        now = datetime.now(UTC)
        expires = now + (self.access_ttl if kind == ACCESS else self.refresh_ttl)
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": ISSUER, "sub": subject, "typ": kind, "jti": jti, "role": role.value,
            "projects": projects, "iat": int(now.timestamp()), "exp": int(expires.timestamp()),
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm="HS256"), jti, expires)

    def decode(self, token: str, kind: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], issuer=ISSUER,
                                options={"require_exp": True, "require_sub": True, "verify_aud": False})
        except ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except JWTError as exc:
            raise Unauthorized("invalid token") from exc
        if claims.get("typ") != kind:
            raise Unauthorized(f"not an {kind} token" if kind == ACCESS else f"not a {kind} token")
        return claims

    def principal(self, token: str) -> Principal:
        claims = self.decode(token, ACCESS)
        try:
            role = Role(claims["role"])
        except (KeyError, ValueError) as exc:
            raise Unauthorized("invalid token") from exc
        projects = claims.get("projects")
        return Principal(str(claims["sub"]), role, None if projects is None else tuple(projects), "password")


class OidcVerifier:
    """RS256 tokens of an external identity provider, checked against its JWKS (cached, refetched on an unknown key).

    While the provider is unreachable the last fetched keys are used, each time logged and counted
    (`glioscope_degraded_total{component="oidc_jwks_stale"}`), for at most `max_age_s` after their fetch;
    after that every OIDC token is refused until the provider answers again (fail closed)."""

    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str,
        role_claim: str = "roles",
        projects_claim: str = "projects",
        username_claim: str = "preferred_username",
        cache_s: float = 300.0,
        max_age_s: float = 3600.0,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.projects_claim = projects_claim
        self.username_claim = username_claim
        self.cache_s = cache_s
        self.max_age_s = max(max_age_s, cache_s)
        self.min_refetch_s = 10.0  # an unknown key ID refetches the JWKS at most this often
        self._keys: list[dict[str, Any]] = []
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def _jwks(self, force: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            # An unknown key ID (key rotation) refetches at most every min_refetch_s, never on every request.
            if age < self.cache_s and not (force and age > self.min_refetch_s):
                return self._keys
            try:
                response = httpx.get(self.jwks_url, timeout=5)
                response.raise_for_status()
                self._keys = list(response.json()["keys"])
                self._fetched_at = time.monotonic()
            except Exception as exc:
                if not self._keys or age > self.max_age_s:
                    logger.warning("the OIDC provider's JWKS could not be fetched (%s); %s", type(exc).__name__,
                                   "no keys yet" if not self._keys else f"the kept keys are {age:.0f} s old "
                                   f"(max {self.max_age_s:.0f} s): OIDC tokens refused")
                    self._keys = []
                    raise Unauthorized("the identity provider's keys are unavailable") from exc
                count_degraded("oidc_jwks_stale")
                logger.warning("the OIDC provider's JWKS could not be fetched (%s); using the keys fetched %.0f s "
                               "ago (refused after %.0f s)", type(exc).__name__, age, self.max_age_s)
            return self._keys

    def _key_for(self, kid: str | None) -> dict[str, Any]:
        for force in (False, True):
            keys = self._jwks(force)
            matches = [k for k in keys if kid is None or k.get("kid") == kid]
            if matches:
                return matches[0]
        raise Unauthorized("invalid token (unknown signing key)")

    def principal(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise Unauthorized("invalid token") from exc
        key = self._key_for(header.get("kid"))
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=self.audience, issuer=self.issuer,
                                options={"require_exp": True})
        except ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except JWTError as exc:
            raise Unauthorized("invalid token") from exc
        raw_roles = claims.get(self.role_claim, [])
        names = [raw_roles] if isinstance(raw_roles, str) else list(raw_roles or [])
        role = next((Role(n) for n in names if n in Role.__members__), None)
        if role is None:
            raise Forbidden(f"the token carries no Glioscope role in its '{self.role_claim}' claim")
        raw_projects = claims.get(self.projects_claim, [])
        projects = [raw_projects] if isinstance(raw_projects, str) else [str(p) for p in raw_projects or []]
        name = str(claims.get(self.username_claim) or claims.get("sub") or "unknown")
        return Principal(f"oidc:{name}"[:64], role, None if role == Role.admin else tuple(projects), "oidc")
