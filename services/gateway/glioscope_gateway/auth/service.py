"""Users, sign-in, token refresh with rotation, API keys, bootstrap. No FastAPI here."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import read_scope, session_scope, utcnow
from glioscope_common.errors import Conflict, InvalidInput, NotFound, Unauthorized
from glioscope_common.records.access import ApiKey, RefreshToken, Role, User
from glioscope_gateway.auth.passwords import hash_password, verify_password
from glioscope_gateway.auth.principal import Principal
from glioscope_gateway.auth.tokens import ACCESS, REFRESH, LocalTokens, OidcVerifier

logger = logging.getLogger("glioscope.gateway.auth")

NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
PROJECT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_PASSWORD = 12


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_projects(projects: Sequence[str]) -> list[str]:
    bad = [p for p in projects if not PROJECT.match(p)]
    if bad:
        raise InvalidInput("project names are 1-64 letters, digits, '.', '_' or '-'")
    return list(dict.fromkeys(projects))


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass
class NewApiKey:
    id: str
    name: str
    key: str  # shown once


class ApiKeyCache:
    """Principals of recently verified API keys, by the key's SHA-256, for `ttl_s` seconds.

    Service callers send the same key on every request: this saves a database round trip per
    request. Revoking a key in this process drops it at once; another replica keeps answering it
    for at most `ttl_s` seconds. Unknown keys are not cached (a guess costs a lookup each time)."""

    def __init__(self, ttl_s: float, max_entries: int = 1024) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if time.monotonic() >= entry[0]:
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self.ttl_s, principal)

    def drop_subject(self, subject: str) -> None:
        with self._lock:
            for digest in [d for d, (_, p) in self._entries.items() if p.subject == subject]:
                del self._entries[digest]


class AuthService:
    def __init__(self, sessions: sessionmaker[Session], tokens: LocalTokens, oidc: OidcVerifier | None,
                 api_key_cache_s: float = 10.0) -> None:
        self._sessions = sessions
        self.tokens = tokens
        self.oidc = oidc
        self.api_keys = ApiKeyCache(api_key_cache_s)

    # -- who is calling ------------------------------------------------------------------------
    def principal_from_bearer(self, token: str) -> Principal:
        from jose import jwt
        from jose.exceptions import JWTError

        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except JWTError as exc:
            raise Unauthorized("invalid token") from exc
        if alg == "HS256":
            return self.tokens.principal(token)
        if alg == "RS256" and self.oidc is not None:
            return self.oidc.principal(token)
        raise Unauthorized("invalid token")

    def principal_from_api_key(self, key: str) -> Principal:
        digest = key_hash(key)
        cached = self.api_keys.get(digest)
        if cached is not None:
            return cached
        with read_scope(self._sessions) as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).first()
            if row is None or not row.active or not hmac.compare_digest(row.key_hash, digest):
                raise Unauthorized("invalid API key")
            projects = None if row.projects is None else tuple(row.projects)
            principal = Principal(f"key:{row.id}", row.role, projects, "api_key")
        self.api_keys.put(digest, principal)
        return principal

    # -- sign-in and refresh -----------------------------------------------------------------
    def sign_in(self, username: str, password: str) -> TokenPair:
        with session_scope(self._sessions) as session:
            user = session.scalars(select(User).where(User.username == username)).first()
            ok = verify_password(user.password_hash if user else None, password)
            if user is None or not ok or not user.active:
                raise Unauthorized("invalid username or password")
            return self._pair(session, user)

    def _pair(self, session: Session, user: User) -> TokenPair:
        projects = None if user.role == Role.admin else list(user.projects)
        access = self.tokens.issue(ACCESS, user.username, user.role, projects)
        refresh = self.tokens.issue(REFRESH, user.username, user.role, projects)
        session.add(RefreshToken(jti=refresh.jti, user_id=user.id, expires_at=refresh.expires_at))
        return TokenPair(access.token, refresh.token, int(self.tokens.access_ttl.total_seconds()))

    def refresh(self, refresh_token: str) -> TokenPair:
        """One use per refresh token: it is rotated; presenting a used one revokes all of the user's sessions."""
        claims = self.tokens.decode(refresh_token, REFRESH)
        with session_scope(self._sessions) as session:
            row = session.get(RefreshToken, str(claims.get("jti", "")))
            user = session.scalars(select(User).where(User.username == claims["sub"])).first()
            if row is None or user is None or row.user_id != user.id or not user.active:
                raise Unauthorized("invalid refresh token")
            if row.used_at is not None:
                session.execute(update(RefreshToken).where(RefreshToken.user_id == user.id, RefreshToken.used_at.is_(None))
                                .values(used_at=utcnow()))
                session.commit()
                logger.warning("a refresh token was reused; the user's refresh tokens are revoked")
                raise Unauthorized("refresh token already used; sign in again")
            row.used_at = utcnow()
            return self._pair(session, user)

    # -- administration --------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: Role, projects: Sequence[str]) -> User:
        if not NAME.match(username):
            raise InvalidInput("usernames are 1-64 letters, digits, '.', '_', '@' or '-'")
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"passwords have at least {MIN_PASSWORD} characters")
        if role == Role.service:
            raise InvalidInput("the service role is for API keys (POST /api/admin/api-keys)")
        user = User(username=username, password_hash=hash_password(password), role=role,
                    projects=check_projects(projects), active=True)
        try:
            with session_scope(self._sessions) as session:
                session.add(user)
                session.flush()
        except IntegrityError as exc:
            raise Conflict("a user with this username exists") from exc
        return user

    def list_users(self) -> Sequence[User]:
        with session_scope(self._sessions) as session:
            return session.scalars(select(User).order_by(User.created_at)).all()

    def create_api_key(self, name: str, projects: Sequence[str] | None, key: str | None = None) -> NewApiKey:
        if not NAME.match(name):
            raise InvalidInput("API key names are 1-64 letters, digits, '.', '_', '@' or '-'")
        key = key or "gsk_" + secrets.token_urlsafe(32)
        row = ApiKey(name=name, key_hash=key_hash(key), role=Role.service,
                     projects=None if projects is None else check_projects(projects), active=True)
        try:
            with session_scope(self._sessions) as session:
                session.add(row)
                session.flush()
        except IntegrityError as exc:
            raise Conflict("this API key is registered already") from exc
        return NewApiKey(row.id, row.name, key)

    def revoke_api_key(self, key_id: str) -> None:
        """Deactivate a key (kept for the audit trail); this replica forgets it at once."""
        with session_scope(self._sessions) as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFound("no such API key")
            row.active = False
        self.api_keys.drop_subject(f"key:{key_id}")

    def bootstrap(self, admin_username: str, admin_password: str | None, api_key: str | None) -> None:
        if admin_username and admin_password:
            with session_scope(self._sessions) as session:
                has_users = session.scalars(select(User.id).limit(1)).first() is not None
            if not has_users:
                try:
                    self.create_user(admin_username, admin_password, Role.admin, [])
                    logger.info("bootstrap: created the first admin user")
                except Conflict:
                    pass
        if api_key:
            with session_scope(self._sessions) as session:
                known = session.scalars(select(ApiKey.id).where(ApiKey.key_hash == key_hash(api_key))).first()
            if known is None:
                try:
                    self.create_api_key("bootstrap", None, api_key)
                    logger.info("bootstrap: registered the service API key")
                except Conflict:
                    pass  # another replica registered it at the same time
