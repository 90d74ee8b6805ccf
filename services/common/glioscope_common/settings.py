"""Settings shared by every service. Each service subclasses `CommonSettings`; nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "development-only-secret-change-me"


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
    nifti_url: str = "http://127.0.0.1:8003"
    reporting_url: str = "http://127.0.0.1:8002"
    model_repository: Path = Path(__file__).resolve().parents[3] / "model_repository"
    model_name: str = "glioscope_unet"
    service_token: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    log_json: bool = False
    otel_endpoint: str = ""  # OTLP/HTTP collector URL (glioscope_common.tracing); empty: no tracing
    metrics_port: int = 0  # the worker's /metrics port (glioscope_common.metrics); 0: none

    @model_validator(mode="after")
    def _refuse_default_secret_outside_development(self) -> "CommonSettings":
        if self.environment == "production" and self.service_token.get_secret_value() == DEVELOPMENT_SECRET:
            raise ValueError("GLIOSCOPE_SERVICE_TOKEN must be set outside development")
        return self

    @property
    def uses_triton(self) -> bool:
        return self.inference_url.startswith(("grpc://", "http://", "https://"))
