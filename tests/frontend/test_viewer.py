"""The viewer in a real browser against the real platform: sign in as a radiologist, open a segmented
study, see the first MPR frame and the tumour overlay, hide a segment, see the 3D tumour surface,
paint a brush stroke and save it as a new segmentation version (when the gateway stores versions),
edit the report, attach a screenshot, download the PDF and sign it; an expired session goes back to
sign-in.

Builds frontend/ when dist-e2e/ is missing or older than its sources (`npm run build:e2e`: the
production bundle leaves out `window.__glioscopeTimings`, which the flow reads), starts the embedded
platform (gateway serving that build, reporting, nifti, worker, Orthanc) like tests/e2e, uploads the
synthetic tumour study, and runs frontend/e2e/viewer.spec.mjs (playwright-core + Debian's chromium).
Without node, npm or chromium the test skips on a developer machine and fails with CI=true.
Screenshots land in test-artifacts/frontend/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.processes import ServiceStartError
from glioscope_common.dev.testing import REPO_ROOT, require_service
from glioscope_reporting.reports.formatting import ml, mm, mm2

from .conftest import e2e

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FRONTEND = REPO_ROOT / "frontend"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "frontend"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
RADIOLOGIST = ("dr-viewer", "dr-viewer-password-1")
SOURCES = ("src", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")


def _newest_source_mtime() -> float:
    newest = 0.0
    for name in SOURCES:
        path = FRONTEND / name
        files = path.rglob("*") if path.is_dir() else [path]
        newest = max([newest, *(f.stat().st_mtime for f in files if f.is_file())])
    return newest


@pytest.fixture(scope="module")
def frontend_dist() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            require_service(tool, "Node.js 20 and npm are needed to build and drive the viewer")
    index = FRONTEND / "dist-e2e" / "index.html"
    if not index.is_file() or index.stat().st_mtime < _newest_source_mtime():
        if not (FRONTEND / "node_modules" / ".package-lock.json").is_file() or os.environ.get("CI", "").lower() == "true":
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True, timeout=900)
        subprocess.run(["npm", "run", "build:e2e"], cwd=FRONTEND, check=True, timeout=900)
    assert index.is_file()
    return FRONTEND / "dist-e2e"


@pytest.fixture(scope="module")
def platform(frontend_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[e2e.Platform]:
    if not Path(CHROMIUM).is_file():
        require_service("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("platform-viewer")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    try:
        orthanc.start()
    except (ServiceStartError, FileNotFoundError) as exc:
        require_service("orthanc", str(exc))
    try:
        env = {
            "GLIOSCOPE_DATABASE_URL": f"sqlite:///{tmp}/glioscope.db",
            "GLIOSCOPE_BROKER_URL": f"sqla+sqlite:///{tmp}/broker.db",
            "GLIOSCOPE_INFERENCE_URL": "onnxruntime",
            "GLIOSCOPE_FRONTEND_DIST": str(frontend_dist),
        }
        yield from e2e.start_platform(tmp, env, orthanc)
    finally:
        orthanc.stop()


def test_viewer_shows_the_tumour_overlay(platform: e2e.Platform, e2e_case: e2e.E2ECase) -> None:
    client = platform.client
    e2e.segment(platform, e2e_case.files)

    index = client.get("/")
    assert index.status_code == 200 and '<div id="root">' in index.text
    assert "wasm-unsafe-eval" in index.headers["content-security-policy"]

    admin_token = client.post("/api/auth/token", data={"username": e2e.E2E_ADMIN[0], "password": e2e.E2E_ADMIN[1]},
                              headers={"x-api-key": ""}).json()["access_token"]
    project = client.get(f"/api/studies/{e2e_case.study_instance_uid}").json()["project"]
    created = client.post("/api/admin/users", headers={"authorization": f"Bearer {admin_token}", "x-api-key": ""},
                          json={"username": RADIOLOGIST[0], "password": RADIOLOGIST[1], "role": "radiologist", "projects": [project]})
    assert created.status_code in (201, 409), created.text

    uid = e2e_case.study_instance_uid
    # The save step is mandatory: the gateway's segmentation versions (POST/GET …/segmentation/versions) exist.
    versions_before = client.get(f"/api/studies/{uid}/segmentation/versions")
    assert versions_before.status_code == 200, (versions_before.status_code, versions_before.text)
    measurements_before = client.get(f"/api/studies/{uid}/measurements").json()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["node", "e2e/viewer.spec.mjs"],
        cwd=FRONTEND,
        env={**os.environ, "GLIOSCOPE_URL": platform.stack.gateway_url, "GLIOSCOPE_USERNAME": RADIOLOGIST[0],
             "GLIOSCOPE_PASSWORD": RADIOLOGIST[1], "GLIOSCOPE_STUDY_UID": uid,
             "GLIOSCOPE_ARTIFACTS": str(ARTIFACTS), "CHROMIUM_PATH": CHROMIUM},
        capture_output=True, text=True, timeout=300,
    )
    print(run.stdout)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{platform.stack.logs()}"
    assert "VIEWER FLOW OK" in run.stdout
    # the panel quotes the measurements of the delivered SEG (tests/e2e/test_consistency.py recomputes those
    # from the SEG), rounded as the report rounds them
    panel = dict(json.loads(re.search(r"^PANEL (.*)$", run.stdout, re.MULTILINE).group(1)))
    for key, name in (("WT", "Whole tumour (WT)"), ("TC", "Tumour core (TC)"), ("ET", "Enhancing tumour (ET)")):
        assert panel[name] == ml(measurements_before["region_volumes_ml"][key]), (name, panel)
    for label in measurements_before["label_volumes"]:
        assert panel[label["name"]] == ml(label["volume_ml"]), (label, panel)
    assert panel["Maximum axial diameter"] == mm(measurements_before["max_axial_diameter_mm"])
    assert panel["Bidimensional product"] == mm2(measurements_before["bidimensional_product_mm2"])
    timings = dict(re.findall(r"(\w+_ms)=(\d+)", run.stdout))
    assert int(timings["first_mpr_frame_ms"]) > 0 and int(timings["overlay_ms"]) > 0
    assert int(timings["surface_ms"]) > int(timings["overlay_ms"]), "the 3D surface comes after the overlay"
    assert (ARTIFACTS / "report.pdf").read_bytes().startswith(b"%PDF-")

    # The browser's save made a new DICOM-SEG version through the gateway, with who and when, the
    # previous version kept and the measurements recomputed.
    saved_line = re.search(r"SAVED_VERSION (\d+)", run.stdout)
    assert saved_line, "the browser saved no segmentation version"
    saved = int(saved_line.group(1))
    versions = {v["version"]: v for v in client.get(f"/api/studies/{uid}/segmentation/versions").json()}
    new, base = versions[saved], versions[saved - 1]
    edit_job = client.get(f"/api/jobs/{new['job_id']}").json()
    print(f"EDIT JOB created {edit_job['created_at']} started {edit_job.get('started_at')} "
          f"finished {edit_job['finished_at']} stages {edit_job['timings_s']}")
    assert new["source"] == "edited" and new["created_by"] == RADIOLOGIST[0] and new["created_at"], new
    assert new["voxel_counts"] != base["voxel_counts"], (base, new)
    assert new["seg_sop_instance_uid"] != base["seg_sop_instance_uid"]
    for version in (saved - 1, saved):
        seg = client.get(f"/api/studies/{uid}/segmentation", params={"version": version})
        assert seg.status_code == 200 and seg.content[128:132] == b"DICM", (version, seg.status_code)
    assert client.get(f"/api/studies/{uid}/measurements").json() != measurements_before, "measurements recomputed"
