from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from glioscope_common.records.access import AuditAction, Role


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")


class RefreshIn(BaseModel):
    refresh_token: str = Field(max_length=4096)


class MeOut(BaseModel):
    subject: str
    role: Role
    projects: list[str] | None = Field(description="null: every project")
    kind: str = Field(description="password, oidc or api_key")
    deidentified: bool


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=12, max_length=256)
    role: Role
    projects: list[str] = Field(default_factory=list, max_length=100)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    role: Role
    projects: list[str]
    active: bool
    created_at: datetime


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    projects: list[str] | None = Field(default=None, max_length=100, description="null: every project")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    key: str = Field(description="shown once; only its hash is stored")


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    role: str
    action: AuditAction
    study_instance_uid: str | None
    outcome: str
    request_id: str | None
    client_ip: str | None
