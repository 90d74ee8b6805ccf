from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastapi.testclient import TestClient

from glioscope_common.internal_identity import bearer_header
from glioscope_common.records.migrate import migrate
from glioscope_nifti.main import create_app
from glioscope_nifti.settings import Settings

TOKEN = "test-key-nifti-0123456789abcdef0123456789"
# The inference worker's identity, signed for the NIfTI service (long-lived enough for the session).
AUTH = bearer_header(TOKEN, audience="nifti", subject="inference-worker", role="service", issuer="worker", ttl_s=3600)


def audit_database(folder: Path) -> str:
    """A records database (with the audit table the service writes to)."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'records.db'}"
    migrate(url)
    return url


def nifti_bytes(
    shape: tuple[int, ...] = (8, 9, 10), zooms: tuple[float, ...] = (1.0, 1.0, 2.0), noise: bool = False
) -> bytes:
    if noise:  # incompressible
        data = np.random.default_rng(0).integers(-32768, 32767, size=shape, dtype=np.int16)
    else:
        data = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    affine = np.diag([*zooms, 1.0])
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms(zooms)
    return gzip.compress(image.to_bytes(), compresslevel=1)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "dataset"


@pytest.fixture
def settings(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        environment="test",
        nifti_root=root,
        database_url=audit_database(tmp_path_factory.mktemp("records")),  # outside the tree the tests watch
        service_token=TOKEN,
        max_upload_bytes=2 * 1024 * 1024,
        max_zip_uncompressed_bytes=64 * 1024 * 1024,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def small_nifti() -> bytes:
    return nifti_bytes()


def snapshot(folder: Path) -> set[str]:
    return {p.as_posix() for p in folder.rglob("*")} if folder.exists() else set()



@pytest.fixture
def auth() -> dict[str, str]:
    return dict(AUTH)


@pytest.fixture
def make_nifti():  # type: ignore[no-untyped-def]
    return nifti_bytes


@pytest.fixture
def tree():  # type: ignore[no-untyped-def]
    return snapshot
