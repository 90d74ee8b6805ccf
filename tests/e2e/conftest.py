"""Fixtures for the end-to-end tests: a small synthetic study with asymmetric, oblique geometry, and
helpers that start the whole platform (gateway, reporting, nifti, worker) as real processes."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.stack import LocalStack
from glioscope_common.dev.testing import REPO_ROOT
from glioscope_common.volume import Volume

E2E_SHAPE = (136, 168, 120)
# A developer may point the tests at another model repository (e.g. a fresh export).
MODEL_REPOSITORY = Path(os.environ.get("GLIOSCOPE_TEST_MODEL_REPOSITORY", REPO_ROOT / "model_repository"))
# The gateway registers this service API key at start; the tests' client sends it (X-API-Key).
E2E_API_KEY = "gsk_e2e-service-key-not-a-secret-0123456789"
E2E_JWT_SECRET = "e2e-jwt-secret-not-a-secret-0123456789abcdef"
E2E_ADMIN = ("e2e-admin", "e2e-admin-password-not-a-secret")


@pytest.fixture(scope="session")
def triton_model_repository() -> Path:
    return MODEL_REPOSITORY


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


@dataclass
class E2ECase:
    folder: Path
    study_instance_uid: str
    t1c: Volume  # the T1c exactly as written (its grid is the SEG's and the mask's grid)
    label: np.ndarray  # the generator's truth on the T1c grid
    files: list[Path]


@pytest.fixture(scope="session")
def e2e_case(tmp_path_factory: pytest.TempPathFactory) -> E2ECase:
    """A synthetic tumour study written with an oblique, asymmetric geometry; FLAIR with thicker slices."""
    from glioscope_training.synth import generate_case

    case = generate_case(seed=424242, shape=E2E_SHAPE)
    oblique = case.affine.copy()
    oblique[:3, :3] = rotation(2, 9.0) @ rotation(0, -6.0) @ case.affine[:3, :3]
    oblique[:3, 3] += np.array([3.5, -7.25, 11.0])
    images = {name: Volume(np.asarray(data, dtype=np.float32), oblique) for name, data in case.images.items()}
    thick = oblique.copy()
    thick[:3, 2] *= 2.0
    images["FLAIR"] = Volume(np.ascontiguousarray(images["FLAIR"].data[:, :, ::2]), thick)
    folder = tmp_path_factory.mktemp("e2e-study")
    study_uid, _ = write_study(images, folder, patient_id="E2E0001", patient_name="Test^EndToEnd",
                               study_description="MR BRAIN e2e", seed=424242)
    return E2ECase(folder, study_uid, images["T1c"], np.asarray(case.label), sorted(folder.rglob("*.dcm")))


def upload(client: httpx.Client, files: list[Path]) -> httpx.Response:
    payload = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in files]
    return client.post("/api/studies", files=payload, timeout=300)


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


def segment(platform: "Platform", files: list[Path]) -> dict:
    """Upload a study (new, or one the platform already has) and wait for its segmentation job; the
    succeeded job."""
    response = upload(platform.client, files)
    assert response.status_code in (200, 201), response.text
    body = response.json()
    job = wait_for_job(platform.client, body["job"]["id"] if body["job"] else body["study"]["latest_job"]["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    return job


@dataclass
class Platform:
    orthanc: LocalOrthanc
    stack: LocalStack
    client: httpx.Client
    env: dict[str, str]


def platform_env(configuration: str, tmp: Path, request: pytest.FixtureRequest, database_url: str | None = None) -> dict[str, str]:
    """GLIOSCOPE_* settings of the configurations: "services" (Postgres — the session's database
    unless `database_url` is given —, RabbitMQ, Redis, Triton), "services-shm" (the same, tensors to
    Triton through shared memory) or "embedded" (SQLite, SQLAlchemy broker, onnxruntime in the worker)."""
    if configuration in ("services", "services-shm"):
        return {
            "GLIOSCOPE_DATABASE_URL": database_url or request.getfixturevalue("postgres_url"),
            "GLIOSCOPE_BROKER_URL": request.getfixturevalue("rabbitmq_url"),
            "GLIOSCOPE_REDIS_URL": request.getfixturevalue("redis_url"),
            "GLIOSCOPE_INFERENCE_URL": request.getfixturevalue("triton").grpc_url,
            "GLIOSCOPE_TRITON_SHARED_MEMORY": "system" if configuration == "services-shm" else "none",
        }
    return {
        "GLIOSCOPE_DATABASE_URL": database_url or f"sqlite:///{tmp}/glioscope.db",
        "GLIOSCOPE_BROKER_URL": f"sqla+sqlite:///{tmp}/broker.db",
        "GLIOSCOPE_INFERENCE_URL": "onnxruntime",
    }


def start_platform(tmp: Path, env: dict[str, str], orthanc: LocalOrthanc) -> Iterator[Platform]:
    env = {
        "GLIOSCOPE_ENVIRONMENT": "test",
        **orthanc.settings_env,  # URLs and credentials
        "GLIOSCOPE_NIFTI_ROOT": str(tmp / "nifti"),
        "GLIOSCOPE_DATA_DIR": str(tmp),
        "GLIOSCOPE_MODEL_REPOSITORY": str(MODEL_REPOSITORY),
        "GLIOSCOPE_ORTHANC_WATCH_INTERVAL_S": "1",
        "GLIOSCOPE_SERVICE_TOKEN": "e2e-service-key-not-a-secret-0123456789abcdef",
        "GLIOSCOPE_JWT_SECRET": E2E_JWT_SECRET,
        "GLIOSCOPE_BOOTSTRAP_API_KEY": E2E_API_KEY,
        "GLIOSCOPE_BOOTSTRAP_ADMIN_USERNAME": E2E_ADMIN[0],
        "GLIOSCOPE_BOOTSTRAP_ADMIN_PASSWORD": E2E_ADMIN[1],
        # Several tests sign in from the same address within a minute (the limit has its own tests).
        "GLIOSCOPE_SIGNIN_RATE_PER_MIN": "600",
        "GLIOSCOPE_SIGNIN_BURST": "100",
        **env,
    }
    stack = LocalStack(env=env, log_dir=tmp / "logs", worker_queue=f"cpu-{tmp.name[-8:]}")
    stack.start()
    try:
        with httpx.Client(base_url=stack.gateway_url, timeout=60, headers={"x-api-key": env["GLIOSCOPE_BOOTSTRAP_API_KEY"]}) as client:
            yield Platform(orthanc, stack, client, env)
    finally:
        stack.stop()


def embedded_platform(name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The whole platform in the embedded configuration with its own Orthanc: for a module-scoped fixture
    (`yield from embedded_platform("my-module", request, tmp_path_factory)`)."""
    tmp = tmp_path_factory.mktemp(f"platform-{name}")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    orthanc.start()
    try:
        yield from start_platform(tmp, platform_env("embedded", tmp, request), orthanc)
    finally:
        orthanc.stop()


def seg_frame_points_ras(seg: pydicom.Dataset) -> np.ndarray:
    """RAS mm of every labelled pixel of a DICOM-SEG, from its own plane positions (not the source's)."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    orientation = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    row_dir, col_dir = orientation[:3], orientation[3:]
    pixels = seg.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[None]
    points = []
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        origin = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        rows, cols = np.nonzero(frame)
        lps = origin + np.outer(cols * column_spacing, row_dir) + np.outer(rows * row_spacing, col_dir)
        points.append(lps)
    lps = np.concatenate(points) if points else np.zeros((0, 3))
    return lps * np.array([-1.0, -1.0, 1.0])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denominator = a.sum() + b.sum()
    return 1.0 if denominator == 0 else float(2 * np.logical_and(a, b).sum() / denominator)
