from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import inspect, text

from glioscope_common.dev.testing import require_service
from glioscope_common.db import make_engine
from glioscope_common.internal_identity import bearer_header
from glioscope_common.records.migrate import migrate as migrate_records

from glioscope_reporting.main import create_app
from glioscope_reporting.settings import Settings

TOKEN = "test-key-reporting-0123456789abcdef0123456789"
POSTGRES_ADMIN = os.environ.get("GLIOSCOPE_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO_ROOT = Path(__file__).resolve().parents[3]


def _unavailable(message: str) -> None:
    require_service("Postgres", message)


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A temporary database glioscope_reporting_test_<random> on 127.0.0.1:5432, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed")
    name = f"glioscope_reporting_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable(str(exc).strip())
    netloc = POSTGRES_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{netloc}/{name}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'glioscope.db'}"
        migrate_records(url)  # the audit table the service writes to (the gateway migrates it in production)
        yield url
        return
    url = request.getfixturevalue("postgres_database_url")
    migrate_records(url)
    yield url
    # The Postgres database lives for the session: empty our tables between tests.
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            if "reporting_reports" in inspect(conn).get_table_names():
                conn.execute(text("DELETE FROM reporting_key_images"))
                conn.execute(text("DELETE FROM reporting_reports"))
    finally:
        engine.dispose()


@pytest.fixture
def settings(database_url: str) -> Settings:
    # store_on_sign off: the PACS tests (test_reporting_dicom.py) turn it on against a real Orthanc.
    return Settings(environment="test", database_url=database_url, service_token=TOKEN, store_on_sign=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def records_db(path: Path) -> str:
    """A SQLite database with the records' tables (the audit log the service writes to)."""
    url = f"sqlite:///{path}"
    migrate_records(url)
    return url


def worker_auth(key: str = TOKEN) -> dict[str, str]:
    """The inference worker's identity (role service), signed for the reporting service."""
    return bearer_header(key, audience="reporting", subject="inference-worker", role="service", issuer="worker",
                         ttl_s=600)


@pytest.fixture
def auth() -> dict[str, str]:
    return worker_auth()


def as_user(user: str, role: str, key: str = TOKEN) -> dict[str, str]:
    """Headers of a gateway call on behalf of an end user (an identity the gateway signed)."""
    return bearer_header(key, audience="reporting", subject=user, role=role, issuer="gateway", ttl_s=600)


@pytest.fixture
def radiologist() -> dict[str, str]:
    return as_user("dr.smith", "radiologist")


@pytest.fixture
def clinician() -> dict[str, str]:
    return as_user("dr.jones", "clinician")


def measurements_high_grade() -> dict[str, Any]:
    return {
        "label_volumes": [
            {"label": 1, "name": "necrotic core", "volume_ml": 8.14},
            {"label": 2, "name": "peritumoural oedema", "volume_ml": 25.27},
            {"label": 3, "name": "enhancing tumour", "volume_ml": 12.03},
        ],
        "region_volumes_ml": {"WT": 45.44, "TC": 20.17, "ET": 12.03},
        "max_axial_diameter_mm": 52.34,
        "perpendicular_diameter_mm": 38.06,
        "bidimensional_product_mm2": 1992.06,
        "axial_slice_index": 77,
        "centroid_ras_mm": [-30.21, 12.5, 20.04],
        "hemisphere": "left",
        "location": {"hemisphere": "left", "lobes": [{"name": "frontal lobe", "fraction": 0.92}],
                     "right_fraction": 0.0, "left_fraction": 1.0, "centroid_mni_mm": [-31.0, 24.5, 28.0],
                     "method": "registration to the MNI152 template (test)"},
        "measured_on": {"series_instance_uid": "1.2.826.0.1.3680043.8.498.1", "series_number": 5,
                        "series_description": "T1 post contrast", "instance_number": 78},
        "tumour_detected": True,
    }


MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def segmentation_ref(study_instance_uid: str = "1.2.826.0.1.3680043.8.498.12345", slices: int = 3) -> dict[str, Any]:
    """A `segmentation` reference as the worker sends it: the SEG (version 1, series 900) and the four source
    series the model read, the SEG's grid (T1c) first, each with its instances."""
    source_series = [
        {
            "role": role,
            "series_instance_uid": f"{study_instance_uid}.{n}",
            "sop_class_uid": MR_IMAGE_STORAGE,
            "sop_instance_uids": [f"{study_instance_uid}.{n}.{k}" for k in range(1, slices + 1)],
            "series_number": n,
            "series_description": f"{role} AX",
        }
        for n, role in ((2, "T1c"), (1, "T1"), (3, "T2"), (4, "FLAIR"))
    ]
    return {
        "version": 1,
        "series_instance_uid": f"{study_instance_uid}.900",
        "sop_instance_uid": f"{study_instance_uid}.900.1",
        "series_number": 900,
        "source_series": source_series,
    }


def make_payload(**overrides: Any) -> dict[str, Any]:
    study_instance_uid = overrides.get("study_instance_uid", "1.2.826.0.1.3680043.8.498.12345")
    payload: dict[str, Any] = {
        "study_instance_uid": study_instance_uid,
        "job_id": "job-1",
        "patient": {"patient_id": "GLIO-0001", "patient_name": "Doe^Jane", "patient_sex": "F", "patient_birth_date": "19700101"},
        "study": {"study_date": "20240315", "study_time": "093012.5", "study_id": "S-77",
                  "study_description": "MRI brain with contrast", "accession_number": "ACC42",
                  "referring_physician_name": "House^Gregory^^Dr"},
        "measurements": measurements_high_grade(),
        "model": {"name": "glioscope_unet", "version": "1.2.0", "intended_use": "research use only"},
        "segmentation": segmentation_ref(study_instance_uid),
    }
    payload.update(overrides)
    return payload


def png_bytes(color: tuple[int, int, int] = (200, 40, 40), size: int = 240) -> bytes:
    image = Image.new("RGB", (size, size), (10, 10, 10))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size * 0.2, size * 0.2, size * 0.8, size * 0.85), fill=(90, 90, 90))
    draw.ellipse((size * 0.45, size * 0.3, size * 0.65, size * 0.5), fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def payload_factory():  # type: ignore[no-untyped-def]
    return make_payload


@pytest.fixture
def key_images() -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        ("key_images", ("axial.png", png_bytes((220, 40, 40)), "image/png")),
        ("key_images", ("coronal.png", png_bytes((40, 200, 40)), "image/png")),
        ("key_images", ("sagittal.png", png_bytes((240, 200, 40)), "image/png")),
    ]


@pytest.fixture
def post_report(client: TestClient, auth):  # type: ignore[no-untyped-def]
    def _post(payload: dict[str, Any], files: list[Any] | None = None, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return client.post(
            "/api/reports",
            data={"payload": json.dumps(payload)},
            files=files or None,
            headers=auth if headers is None else headers,
        )

    return _post


@pytest.fixture
def artifacts_dir() -> Path:
    folder = REPO_ROOT / "test-artifacts" / "reporting"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
