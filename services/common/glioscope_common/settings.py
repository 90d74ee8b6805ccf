"""Settings shared by every service. Each service subclasses `CommonSettings`; nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The default this project once shipped, and other values published in its docs and charts: refused
# in every mode, like any secret shorter than MIN_SECRET_LENGTH.
DEVELOPMENT_SECRET = "development-only-secret-change-me"
KNOWN_SECRETS = frozenset({DEVELOPMENT_SECRET, "service-token", "jwt-secret", "change-me", "changeme", "secret"})
MIN_SECRET_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 10  # "x" * 40 is long, not random


def check_secret(name: str, value: SecretStr | None) -> None:
    """Refuse a missing, short or published secret (every mode: there is no default to fall back on)."""
    text = value.get_secret_value() if value is not None else ""
    if not text:
        raise ValueError(f"{name} must be set: at least {MIN_SECRET_LENGTH} random characters "
                         "(`make run` generates one in var/; the chart reads it from its Secret)")
    if text in KNOWN_SECRETS or text.lower().startswith("development-only"):
        raise ValueError(f"{name} is a published default; generate a random one")
    if len(text) < MIN_SECRET_LENGTH:
        raise ValueError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
    if len(set(text)) < MIN_DISTINCT_CHARACTERS:
        raise ValueError(f"{name} is not random (too few distinct characters); generate one, e.g. `openssl rand -hex 32`")


class CommonSettings(BaseSettings):
    """The URLs that choose between the embedded configuration and production (see docs/architecture.md)."""

    model_config = SettingsConfigDict(env_prefix="GLIOSCOPE_", env_file=None, extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("var")
    # SQLite file by default; postgresql+psycopg://... in production.
    database_url: str = "sqlite:///var/glioscope.db"
    # A kombu transport that needs no server by default; amqp://... (RabbitMQ) in production.
    broker_url: str = "sqla+sqlite:///var/broker.db"
    # Empty: events stay in process/database. redis://... in production.
    redis_url: str = ""
    # "onnxruntime" runs the model in-process; "grpc://host:8001" talks to Triton.
    inference_url: str = "onnxruntime"
    dicomweb_url: str = "http://127.0.0.1:8042/dicom-web"
    orthanc_url: str = "http://127.0.0.1:8042"
    # Orthanc's HTTP credentials (basic authentication: Orthanc answers 401 without them, in every mode).
    # No default password: `make run` generates one (var/orthanc-password), the tests' LocalOrthanc makes a
    # random one, the chart reads it from its Secret. A SecretStr, never logged; keep it out of the two URLs
    # above (user:password@ found there is moved here).
    orthanc_username: str = "glioscope"
    orthanc_password: SecretStr = SecretStr("")
    nifti_url: str = "http://127.0.0.1:8003"
    reporting_url: str = "http://127.0.0.1:8002"
    model_repository: Path = Path(__file__).resolve().parents[3] / "model_repository"
    model_name: str = "glioscope_unet"
    # The key that signs the per-request identities between services (glioscope_common.internal_identity):
    # held by the gateway, the worker, reporting and NIfTI only. Required, at least 32 random characters.
    service_token: SecretStr | None = None
    log_json: bool = False
    otel_endpoint: str = ""  # OTLP/HTTP collector URL (glioscope_common.tracing); empty: no tracing
    metrics_port: int = 0  # the worker's /metrics port (glioscope_common.metrics); 0: none

    # False only for tools that call no other service (the `glioscope segment` command).
    needs_internal_key: ClassVar[bool] = True

    @model_validator(mode="after")
    def _refuse_missing_or_known_service_token(self) -> "CommonSettings":
        if self.needs_internal_key:
            check_secret("GLIOSCOPE_SERVICE_TOKEN", self.service_token)
        return self

    @property
    def internal_key(self) -> str:
        assert self.service_token is not None  # checked by the validator
        return self.service_token.get_secret_value()

    @property
    def uses_triton(self) -> bool:
        return self.inference_url.startswith(("grpc://", "http://", "https://"))

    @model_validator(mode="after")
    def _orthanc_credentials_out_of_urls(self) -> "CommonSettings":
        """Credentials in GLIOSCOPE_ORTHANC_URL/DICOMWEB_URL (older deployments) become orthanc_username /
        orthanc_password (unless those are set) and leave the URLs, which appear in messages."""
        for name in ("orthanc_url", "dicomweb_url"):
            parts = urlsplit(getattr(self, name))
            if "@" not in parts.netloc:
                continue
            userinfo, _, hostport = parts.netloc.rpartition("@")
            user, _, password = userinfo.partition(":")
            if not self.orthanc_password.get_secret_value() and password:
                self.orthanc_username = unquote(user) or self.orthanc_username
                self.orthanc_password = SecretStr(unquote(password))
            setattr(self, name, urlunsplit(parts._replace(netloc=hostport)))
        return self

    @property
    def orthanc_auth(self) -> tuple[str, str] | None:
        """(username, password) for Orthanc's HTTP basic authentication (httpx `auth=`); None when unset."""
        password = self.orthanc_password.get_secret_value()
        return (self.orthanc_username, password) if password else None
