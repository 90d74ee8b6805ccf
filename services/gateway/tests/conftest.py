from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.volume import Volume
from glioscope_gateway.main import create_app
from glioscope_gateway.settings import GatewaySettings


JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
ADMIN_USERNAME = "root-admin"
ADMIN_PASSWORD = "correct-horse-battery-staple-1"
SERVICE_KEY = "gsk_test_service_key_0123456789abcdefghijklmnop"


def gateway_settings(tmp_path: Path, orthanc: LocalOrthanc, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = dict(
        environment="test",
        database_url=f"sqlite:///{tmp_path}/gateway.db",
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.db",
        **orthanc.settings_values,  # URLs and credentials
        orthanc_watcher=False,
        max_upload_bytes=64 * 1024 * 1024,
        max_zip_uncompressed_bytes=32 * 1024 * 1024,
        jwt_secret=JWT_SECRET,
        bootstrap_admin_username=ADMIN_USERNAME,
        bootstrap_admin_password=ADMIN_PASSWORD,
        bootstrap_api_key=SERVICE_KEY,
        signin_burst=200,  # tests sign in often from one client address; test_auth checks the limit
        upload_processes=0,  # uploads in the app's threads; test_upload.py runs them in an upload process
    )
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture()
def gateway_app(tmp_path: Path, orthanc: LocalOrthanc):  # type: ignore[no-untyped-def]
    return create_app(gateway_settings(tmp_path, orthanc))


@pytest.fixture()
def gateway(gateway_app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The gateway in-process against the real Orthanc, a SQLite file and kombu's SQLAlchemy broker,
    called with the bootstrap service API key (every project)."""
    with TestClient(gateway_app, headers={"x-api-key": SERVICE_KEY}) as client:
        yield client


def sign_in(client: TestClient, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/token", data={"username": username, "password": password},
                           headers={"x-api-key": ""})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "x-api-key": ""}


def small_study(folder: Path, seed: int, roles: tuple[str, ...] = ("T1", "T1c", "T2", "FLAIR")) -> list[Path]:
    rng = np.random.default_rng(seed)
    affine = np.array([[0.9, 0.1, 0, -20], [-0.1, 0.9, 0, -30], [0, 0, 2.0, -10], [0, 0, 0, 1]])
    images = {role: Volume(rng.uniform(0, 1000, (28, 24, 14)).astype(np.float32), affine) for role in roles}
    write_study(images, folder, patient_id=f"SMALL{seed}", patient_name="Small^Study", study_description="small", seed=seed)
    return sorted(folder.rglob("*.dcm"))


def as_files(paths: list[Path], content_type: str = "application/dicom") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), content_type)) for p in paths]
