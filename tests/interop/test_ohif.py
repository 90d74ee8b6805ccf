"""Interoperability with a viewer no one here wrote (issue #17): OHIF Viewer v3 opens a study the
platform has processed, in Debian's chromium driven by playwright-core.

The embedded platform (gateway, reporting, nifti, worker, Orthanc; like tests/e2e) segments the
synthetic tumour study, and the report is exported (`POST /api/studies/{uid}/report/export`), so the
PACS holds T1, T1c, T2, FLAIR, the DICOM-SEG, the TID 1500 SR and the Encapsulated PDF. OHIF's built
app (`@ohif/app`'s dist/, pinned in tests/interop/ohif/package.json, installed with `npm ci`) is served
by `ohif_server.OhifServer` with tests/interop/ohif/app-config.js: one `dicomweb` data source on the
page's own origin, forwarded to the gateway's `/dicom-web` with the test's service API key.

Why the gateway and not Orthanc: the gateway's DICOMweb proxy is what a hospital would point OHIF at
(Orthanc is not exposed and needs its own credentials), so the test also shows that the routes it
forwards are enough for OHIF (QIDO-RS with includefield, series metadata with BulkDataURIs, frames,
the SEG as a whole instance). The key stays in the test's server (the browser sees one origin and no
credential; an access token would expire after 15 minutes). The server passes the browser's Host on,
so the gateway's `Forwarded` header makes Orthanc write BulkDataURIs on the OHIF origin.

tests/interop/ohif/ohif.spec.mjs then checks, against expectations read from the PACS here (not from
OHIF): every series is listed in the study browser (the SR included), the first image is drawn, the
SEG opened from the study browser ("Yes" to its prompt) is shown on the T1c, its three segments are
listed by name and drawn in their colours, OHIF's labelmap holds the SEG's voxels on the same T1c
images, and the report PDF is fetched (WADO-RS bulk data) and shown. Opening the SR is probed and
printed, not asserted: OHIF 3.13.2 shows SR content only for measurements with image coordinates,
and ours has none (docs/testing.md). Screenshots land in test-artifacts/ohif/. Without node, npm or chromium the test skips on
a developer machine and fails with CI=true."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.processes import ServiceStartError
from glioscope_common.dev.testing import REPO_ROOT, require_service

from .conftest import e2e
from .ohif_server import OhifServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OHIF = Path(__file__).resolve().parent / "ohif"
OHIF_DIST = OHIF / "node_modules" / "@ohif" / "app" / "dist"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ohif"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
MODEL = e2e.MODEL_REPOSITORY / "glioscope_unet"  # the default (newest) version's metadata: the SEG's


@pytest.fixture(scope="module")
def ohif_dist() -> Path:
    """OHIF's built viewer and playwright-core, installed from the lock file when missing or stale."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            require_service(tool, "Node.js 20 and npm are needed to install OHIF and drive chromium")
    installed = OHIF / "node_modules" / ".package-lock.json"
    if not installed.is_file() or installed.stat().st_mtime < (OHIF / "package-lock.json").stat().st_mtime \
            or not (OHIF_DIST / "index.html").is_file():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=OHIF, check=True, timeout=600)
    assert (OHIF_DIST / "index.html").is_file() and (OHIF_DIST / "app-config.js").is_file()
    return OHIF_DIST


@pytest.fixture(scope="module")
def platform(ohif_dist: Path, request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[e2e.Platform]:
    """The embedded configuration (SQLite, SQLAlchemy broker, onnxruntime) with its own Orthanc."""
    if not Path(CHROMIUM).is_file():
        require_service("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("platform-ohif")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    try:
        orthanc.start()
    except ServiceStartError as exc:
        require_service("Orthanc", str(exc))
    with orthanc:  # stopped on the way out
        yield from e2e.start_platform(tmp, e2e.platform_env("embedded", tmp, request), orthanc)


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def seg_voxel_counts(seg: pydicom.Dataset) -> dict[str, int]:
    """Labelled pixels of a BINARY DICOM-SEG per '<source SOP Instance UID>:<segment number>', read from
    its frames and their functional groups (what any reader of the standard must find)."""
    pixels = seg.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[None]
    counts: Counter[str] = Counter()
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        counts[f"{source}:{segment}"] += int(np.count_nonzero(frame))
    return {key: n for key, n in counts.items() if n}


def expectations(orthanc: LocalOrthanc, study_uid: str, job: dict) -> dict:
    """What OHIF must show, from the PACS itself: the study's series, the SEG's segments (colours from
    the model metadata the SEG was written from) and voxels, the T1c the SEG references."""
    dicomweb = orthanc.dicomweb()
    try:
        series = [{"uid": _value(s, "0020000E"), "modality": _value(s, "00080060"), "description": _value(s, "0008103E")}
                  for s in dicomweb.search_series(study_uid)]
        modalities = Counter(s["modality"] for s in series)
        assert modalities == {"MR": 4, "SEG": 1, "SR": 1, "DOC": 1}, f"the processed study in the PACS: {series}"
        seg_series = next(s for s in series if s["modality"] == "SEG")
        assert seg_series["uid"] == job["seg_series_instance_uid"]
        (seg,) = dicomweb.retrieve_series(study_uid, seg_series["uid"])
    finally:
        dicomweb.close()
    t1c_uid = job["sequence_series"]["T1c"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t1c_uid, "the SEG references the T1c"
    from glioscope_common.model_metadata import ModelMetadata

    colours = {label.name: list(label.color_rgb) for label in ModelMetadata.load(MODEL).labels}
    segments = [{"number": int(s.SegmentNumber), "label": str(s.SegmentLabel), "rgb": colours[str(s.SegmentLabel)]}
                for s in seg.SegmentSequence]
    return {
        "series": [{"modality": s["modality"], "description": s["description"]} for s in series],
        "sr_description": next(s["description"] for s in series if s["modality"] == "SR"),
        "t1c_series_uid": t1c_uid,
        "t1c_description": next(s["description"] for s in series if s["uid"] == t1c_uid),
        "segments": segments,
        "voxel_counts": seg_voxel_counts(seg),
    }


def test_ohif_shows_the_seg_on_the_t1c_and_lists_the_sr(platform: e2e.Platform, e2e_case: e2e.E2ECase,
                                                        ohif_dist: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    client = platform.client
    job = e2e.segment(platform, e2e_case.files)
    uid = e2e_case.study_instance_uid

    # The report's Encapsulated PDF and TID 1500 SR to the PACS (an admin may export a draft).
    token = client.post("/api/auth/token", data={"username": e2e.E2E_ADMIN[0], "password": e2e.E2E_ADMIN[1]},
                        headers={"x-api-key": ""}).json()["access_token"]
    exported = client.post(f"/api/studies/{uid}/report/export",
                           headers={"authorization": f"Bearer {token}", "x-api-key": ""})
    assert exported.status_code == 200, exported.text
    assert exported.json()["export"]["stored_at"], exported.text

    expected = expectations(platform.orthanc, uid, job)
    expect_path = tmp_path / "expect.json"
    expect_path.write_text(json.dumps(expected))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pipeline_s = time.monotonic() - started

    config = (OHIF / "app-config.js").read_bytes()
    with OhifServer(ohif_dist, config, platform.stack.gateway_url + "/dicom-web",
                    {"x-api-key": platform.env["GLIOSCOPE_BOOTSTRAP_API_KEY"]}) as server:
        run = subprocess.run(
            ["node", "ohif.spec.mjs"],
            cwd=OHIF,
            env={**os.environ, "OHIF_URL": server.url, "OHIF_STUDY_UID": uid, "OHIF_EXPECT": str(expect_path),
                 "OHIF_ARTIFACTS": str(ARTIFACTS), "CHROMIUM_PATH": CHROMIUM},
            capture_output=True, text=True, timeout=240,
        )
        forwarded = list(server.requests)
    print(run.stdout)
    print(f"PIPELINE {pipeline_s:.1f} s, OHIF {time.monotonic() - started - pipeline_s:.1f} s, "
          f"{len(forwarded)} DICOMweb requests through the gateway")
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{platform.stack.logs()}"
    assert "OHIF INTEROP OK" in run.stdout and "SR OPEN PROBE" in run.stdout
    assert int(re.search(r"first_image_ms=(\d+)", run.stdout).group(1)) > 0
    # OHIF read through the gateway (series metadata, frames, the PDF as bulk data) and the gateway
    # failed nothing it asked.
    paths = [path for _, path in forwarded]
    assert any(p.endswith("/metadata") for p in paths) and any("/frames/" in p for p in paths), paths[:20]
    assert any(p.endswith("/bulk/00420011") for p in paths), "the PDF (Encapsulated Document) read as bulk data"
    refused = [(status, path) for status, path in forwarded if status >= 500]
    assert not refused, refused
    for name in ("study.png", "seg-prompt.png", "seg-on-t1c.png", "seg-on-t1c-viewport.png", "report-pdf.png"):
        assert (ARTIFACTS / name).read_bytes().startswith(b"\x89PNG"), name
