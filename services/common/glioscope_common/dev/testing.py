"""Pytest plugin with the service-tier fixtures: load it with `pytest_plugins = ["glioscope_common.dev.testing"]`
in the rootdir conftest.py (pytest refuses `pytest_plugins` in non-root conftests).

Real services, never mocks: Orthanc and Triton are started as local processes (session-scoped);
Postgres, Redis and RabbitMQ are expected on 127.0.0.1 at their default ports (override with
GLIOSCOPE_TEST_POSTGRES_ADMIN_URL, GLIOSCOPE_TEST_REDIS_URL, GLIOSCOPE_TEST_RABBITMQ_URL).
A missing service skips the test on a developer machine and fails it when CI=true.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
from contextlib import contextmanager
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.processes import ServiceStartError
from glioscope_common.dev.triton import LocalTriton

REPO_ROOT = Path(__file__).resolve().parents[4]

__all__ = [
    "REPO_ROOT", "in_ci", "make_mr_series", "require_executable", "require_module", "require_path", "require_service",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_service(name: str, reason: str) -> None:
    """Skip (developer machine) or fail (CI=true: services are never skipped in CI) for a missing service."""
    message = f"{name} unavailable: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)  # (also at a test module's top level)


def require_module(name: str, hint: str = "") -> Any:
    """The imported module `name`; missing: a skip on a developer machine, a failure with CI=true (CI installs
    every extra). Use instead of `pytest.importorskip`, which skips in CI too."""
    import importlib  # noqa: PLC0415

    try:
        return importlib.import_module(name)
    except ImportError as e:
        require_service(f"python module {name}", f"{e}{f' ({hint})' if hint else ''}")


def require_executable(name: str, package: str = "") -> str:
    """The path of the program `name` on PATH; missing: a skip, or a failure with CI=true."""
    import shutil  # noqa: PLC0415

    path = shutil.which(name)
    if path is None:
        require_service(name, f"not on PATH{f' (install {package})' if package else ''}")
    return path  # type: ignore[return-value]


def require_path(path: Path, what: str = "") -> Path:
    """`path` (test data such as ../shared/data); missing: a skip, or a failure with CI=true (CI has the data)."""
    if not Path(path).exists():
        require_service(what or str(path), f"{path} is missing")
    return Path(path)


def _tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------- Orthanc


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrthanc]:
    """A local Orthanc with DICOMweb, StableAge 2 s, storage in a temp dir; shared by the session. Locked down
    as the product runs it (HTTP needs credentials): talk to it with `orthanc.client()` (httpx),
    `orthanc.rest()`, `orthanc.dicomweb()`, point services at it with `orthanc.settings_values` /
    `orthanc.settings_env`, and C-STORE to it as `storescu -aet LOCAL_SCU_AET -aec orthanc.aet`."""
    yield from serving(LocalOrthanc(tmp_path_factory.mktemp("orthanc"), stable_age=2))


def serving(server: LocalOrthanc) -> Iterator[LocalOrthanc]:
    """Start `server` for a fixture (a missing Orthanc skips, or fails with CI=true), stop it afterwards."""
    try:
        server.start()
    except ServiceStartError as e:
        require_service("Orthanc", str(e))
    yield server
    server.stop()


# --------------------------------------------------------------------------------------------- Triton


@pytest.fixture(scope="session")
def triton_model_repository() -> Path:
    """The Triton model repository the `triton` fixture serves; override in a conftest for test models."""
    return REPO_ROOT / "model_repository"


# Module scope: modules override `triton_model_repository` (a tiny test model, the real one), and a
# session-wide server would keep serving whichever module asked first.
@pytest.fixture(scope="module")
def triton(triton_model_repository: Path) -> Iterator[LocalTriton]:
    """tritonserver from the nvidia-pytriton wheel serving `triton_model_repository` (configs/cpu.pbtxt)."""
    repo = Path(triton_model_repository)
    if not repo.is_dir() or not any((p / "config.pbtxt").exists() or (p / "configs").is_dir() for p in repo.iterdir() if p.is_dir()):
        require_service("Triton", f"no model in {repo}")
    server = LocalTriton(repo)
    try:
        server.start()
    except ServiceStartError as e:
        require_service("Triton", str(e))
    yield server
    server.stop()


# --------------------------------------------------------------------------------------------- Postgres


@contextmanager
def fresh_postgres_database(prefix: str = "glioscope_test") -> Iterator[str]:
    """A new, empty database `<prefix>_<random>` (dropped afterwards); a SQLAlchemy URL (psycopg 3)."""
    admin = os.environ.get("GLIOSCOPE_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg  # noqa: PLC0415
    except ImportError:
        require_service("Postgres", "psycopg is not installed")
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as e:
        require_service("Postgres", f"{admin}: {e}")
    parts = urlsplit(admin)
    try:
        yield f"postgresql+psycopg://{parts.netloc}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for the session; tests that need their own use `fresh_postgres_database()`."""
    with fresh_postgres_database() as url:
        yield url


# --------------------------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> str:
    """`redis://127.0.0.1:6379/<n>`: a random database number in 1..15, flushed at start."""
    base = os.environ.get("GLIOSCOPE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    try:
        import redis  # noqa: PLC0415
    except ImportError:
        require_service("Redis", "the redis package is not installed")
    url = f"{base.rstrip('/')}/{secrets.randbelow(15) + 1}"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except redis.RedisError as e:
        require_service("Redis", f"{base}: {e}")
    return url


# --------------------------------------------------------------------------------------------- RabbitMQ


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """`amqp://guest:guest@127.0.0.1:5672//`, checked with an AMQP connection (kombu) when installed."""
    url = os.environ.get("GLIOSCOPE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if not _tcp_reachable(host, port):
        require_service("RabbitMQ", f"nothing listens on {host}:{port}")
    try:
        import kombu  # noqa: PLC0415
    except ImportError:
        return url
    try:
        with kombu.Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as e:  # noqa: BLE001 - kombu raises transport-specific errors
        require_service("RabbitMQ", f"{url}: {e}")
    return url


# --------------------------------------------------------------------------------------------- DICOM


def make_mr_series(
    n: int = 3, size: int = 16, study_uid: str | None = None, patient_id: str = "GLIO-TEST-1", seed: int = 0
) -> list[bytes]:
    """Minimal valid MR Image Storage instances (one axial series, 1 mm slices), as Part 10 bytes.

    For DICOMweb/Orthanc tests that need DICOM but not a realistic volume.
    """
    import numpy as np  # noqa: PLC0415
    from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_of_reference = generate_uid()
    out = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PatientName = "Test^Glioscope"
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate = "20240101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = "ACC1"
        ds.StudyID = "1"
        ds.ReferringPhysicianName = ""
        ds.Modality = "MR"
        ds.SeriesNumber = 1
        ds.SeriesDescription = "T1c"
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.EchoTime = 2.0
        ds.RepetitionTime = 8.0
        ds.EchoTrainLength = 1
        ds.MagneticFieldStrength = 3
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness = 1.0
        ds.PixelSpacing = [1.0, 1.0]
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = size
        ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelData = rng.integers(-100, 1000, size=(size, size), dtype=np.int16).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def cornerstone_geometry(datasets: Sequence[Any]) -> dict[str, list[float] | list[int]]:
    """The volume geometry Cornerstone3D builds from single-frame instances of one series (what the
    viewer posts with an edited mask): slices sorted along the scan-axis normal (IOP row x column),
    origin the first slice's ImagePositionPatient, spacing [column, row, slice], direction [row
    cosines, column cosines, normal], all LPS. Written from the DICOM attributes only, independently
    of `glioscope_common.dicom`."""
    import numpy as np  # noqa: PLC0415

    orientation = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted((np.array(ds.ImagePositionPatient, dtype=float) for ds in datasets), key=lambda p: float(p @ normal))
    row_spacing, column_spacing = (float(v) for v in datasets[0].PixelSpacing)
    return {
        "dimensions": [int(datasets[0].Columns), int(datasets[0].Rows), len(datasets)],
        "spacing": [column_spacing, row_spacing, float(abs((positions[1] - positions[0]) @ normal))],
        "origin": [float(v) for v in positions[0]],
        "direction": [float(v) for v in (*orientation, *normal)],
    }
