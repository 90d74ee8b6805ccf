from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dicom_volume import write_study
from glioscope_common.local_services import LocalOrthanc
from glioscope_common.volume import Volume
from glioscope_gateway.main import create_app
from glioscope_gateway.settings import GatewaySettings


@pytest.fixture()
def gateway(tmp_path: Path, orthanc: LocalOrthanc) -> Iterator[TestClient]:
    """The gateway in-process against the real Orthanc, a SQLite file and kombu's SQLAlchemy broker."""
    settings = GatewaySettings(
        environment="test",
        database_url=f"sqlite:///{tmp_path}/gateway.db",
        broker_url=f"sqla+sqlite:///{tmp_path}/broker.db",
        dicomweb_url=orthanc.dicomweb_url,
        orthanc_url=orthanc.url,
        orthanc_watcher=False,
        max_upload_bytes=64 * 1024 * 1024,
        max_zip_uncompressed_bytes=32 * 1024 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def small_study(folder: Path, seed: int, roles: tuple[str, ...] = ("T1", "T1c", "T2", "FLAIR")) -> list[Path]:
    rng = np.random.default_rng(seed)
    affine = np.array([[0.9, 0.1, 0, -20], [-0.1, 0.9, 0, -30], [0, 0, 2.0, -10], [0, 0, 0, 1]])
    images = {role: Volume(rng.uniform(0, 1000, (28, 24, 14)).astype(np.float32), affine) for role in roles}
    write_study(images, folder, patient_id=f"SMALL{seed}", patient_name="Small^Study", study_description="small", seed=seed)
    return sorted(folder.rglob("*.dcm"))


def as_files(paths: list[Path], content_type: str = "application/dicom") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), content_type)) for p in paths]
