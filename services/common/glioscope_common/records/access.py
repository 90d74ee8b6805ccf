"""Users, API keys, refresh tokens and the append-only audit log (the gateway's access control).

`audit_events` is append-only: the ORM refuses updates and deletes of `AuditEvent` rows (see
`_refuse_change`), and the migration adds database triggers that raise on UPDATE and DELETE.
Nothing here holds PHI: actors are usernames or API key IDs, studies are referred to by UID.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from glioscope_common.db import UTCDateTime, utcnow
from glioscope_common.records.models import RecordsBase, new_id


class Role(str, enum.Enum):
    admin = "admin"
    radiologist = "radiologist"
    clinician = "clinician"
    researcher = "researcher"  # read-only, de-identified data
    service = "service"  # service-to-service calls (API keys)


class AuditAction(str, enum.Enum):
    viewed = "viewed"
    downloaded = "downloaded"
    uploaded = "uploaded"
    edited = "edited"
    signed = "signed"
    exported = "exported"
    signed_in = "signed_in"
    failed_sign_in = "failed_sign_in"
    administered = "administered"  # users and API keys created by an admin
    created = "created"  # a report drafted, a NIfTI file stored (by the service that writes it)
    deleted = "deleted"


class User(RecordsBase):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    projects: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(RecordsBase):
    """A service-to-service key: only its SHA-256 is stored (keys are 256-bit random, so no slow hash is needed)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16), default=Role.service)
    projects: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every project
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshToken(RecordsBase):
    """One refresh token (by its JWT ID). Used once: refreshing rotates it; a reuse revokes the user's tokens."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEvent(RecordsBase):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)  # username or "key:<id>", never PHI
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[AuditAction] = mapped_column(Enum(AuditAction, native_enum=False, length=16), index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | denied | refused | failed
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AppendOnlyViolation(RuntimeError):
    pass


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_change(mapper: object, connection: object, target: AuditEvent) -> None:
    raise AppendOnlyViolation("audit_events is append-only")
