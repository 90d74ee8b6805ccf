"""A raw hospital study sent by C-STORE, as a modality sends it, through the real services (issue 15).

`../shared/data/real/tcga-fg-6692-raw` (T1, T1c, T2, FLAIR as the scanner wrote them: skull, neck and
orbits, 5.5 mm slices, series not co-registered) is written as a DICOM study and sent to Orthanc with
dcmtk's storescu; the gateway's watcher registers it and queues the job; the worker (Postgres, RabbitMQ,
Redis, Triton gRPC for the tumour model, deepbet's networks with onnxruntime in the worker) runs brain
extraction and the model. Then:

* the DICOM-SEG and the report PDF exist;
* >= 95 % of the labelled voxels (the delivered NIfTI mask and the SEG, each in patient coordinates) lie
  inside the case's own `t1c_brainmask.nii.gz` dilated by one voxel;
* the right frontal lesion is the one labelled (atlas location: right hemisphere, frontal lobe first);
* the report's findings carry the automatic brain extraction note; the job timed `brain_extraction`;
* the brain mask the job delivers (`nifti_paths["brain_mask"]`, BIDS `_desc-brain_mask`) has Dice >= 0.93
  against the case's mask.

A missing ../shared or service skips on a developer machine and fails with CI=true.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pypdf import PdfReader
from scipy import ndimage

from glioscope_common.dev.orthanc import LOCAL_SCU_AET, LocalOrthanc
from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dev.testing import REPO_ROOT, require_executable, require_path
from glioscope_inference.cli import load_nifti
from glioscope_inference.pipeline import BRAIN_EXTRACTION_NOTE

from .conftest import Platform, dice, platform_env, seg_frame_points_ras, start_platform, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.services]

RAW = REPO_ROOT.parent / "shared" / "data" / "real" / "tcga-fg-6692-raw"
SERIES = {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}
INSIDE_MIN = 0.95  # share of labelled voxels inside the case's brain mask (+1 voxel)
BRAIN_DICE_MIN = 0.93


def _nifti(name: str) -> nib.Nifti1Image:
    return nib.load(str(RAW / f"{name}.nii.gz"))


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    """The raw case as the four DICOM MR series a scanner would send (same grids as the NIfTI files)."""
    for name in (*SERIES.values(), "t1c_brainmask"):
        require_path(RAW / f"{name}.nii.gz", "../shared/data/real/tcga-fg-6692-raw")
    images = {role: load_nifti(RAW / f"{name}.nii.gz") for role, name in SERIES.items()}
    folder = tmp_path_factory.mktemp("raw-study")
    study_uid, _ = write_study(images, folder, patient_id="RAW-TCGA-6692", patient_name="Raw^Hospital",
                               study_description="MR BRAIN raw", seed=6692)
    return study_uid, sorted(folder.rglob("*.dcm"))


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("platform-raw")
    with LocalOrthanc(tmp / "orthanc", stable_age=2) as orthanc:
        yield from start_platform(tmp, platform_env("services", tmp, request), orthanc)


def _c_store(platform: Platform, files: list[Path]) -> None:
    storescu = require_executable("storescu", "the Debian package dcmtk")
    sent = subprocess.run(
        [storescu, "-aet", LOCAL_SCU_AET, "-aec", platform.orthanc.aet, "127.0.0.1", str(platform.orthanc.dicom_port),
         *map(str, files)],
        capture_output=True, text=True,
    )
    assert sent.returncode == 0, sent.stderr


@pytest.fixture(scope="module")
def processed(platform: Platform, raw_files: tuple[str, list[Path]]) -> dict:
    """C-STORE, the watcher's registration (all four sequences found, a job queued), the finished job."""
    study_uid, files = raw_files
    _c_store(platform, files)
    deadline = time.monotonic() + 120
    study = None
    while time.monotonic() < deadline:
        response = platform.client.get(f"/api/studies/{study_uid}")
        if response.status_code == 200 and response.json()["latest_job"] is not None:
            study = response.json()
            break
        time.sleep(0.5)
    assert study is not None, f"the watcher never queued a job for the C-STOREd study\n{platform.stack.logs()}"
    assert study["status"] == "ready", study
    assert study["source"] in ("dicomweb", "dimse")  # from the PACS, not an upload
    job = wait_for_job(platform.client, study["latest_job"]["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    return {**job, "study_instance_uid": study_uid}


def _share_inside(points_ras: np.ndarray, slack: np.ndarray, slack_affine: np.ndarray) -> float:
    """Share of points (patient RAS mm) whose nearest voxel of the reference grid is in `slack`."""
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(slack_affine), points_ras)).astype(int)
    within = np.all((ijk >= 0) & (ijk < slack.shape), axis=1)
    hits = np.zeros(len(ijk), dtype=bool)
    hits[within] = slack[tuple(ijk[within].T)]
    return float(hits.mean()) if len(hits) else 0.0


def test_labels_lie_inside_the_cases_brain_mask(platform: Platform, processed: dict) -> None:
    uid = processed["study_instance_uid"]
    reference = _nifti("t1c_brainmask")
    slack = ndimage.binary_dilation(np.asanyarray(reference.dataobj) > 0,
                                    structure=ndimage.generate_binary_structure(3, 3))

    mask_response = platform.client.get(f"/api/studies/{uid}/mask.nii.gz")
    assert mask_response.status_code == 200, mask_response.text
    mask_image = nib.Nifti1Image.from_bytes(gzip.decompress(mask_response.content))
    labels = np.asanyarray(mask_image.dataobj)
    # The DICOM study was written from t1c.nii.gz, so the delivered mask has that image's voxel centres, but
    # not its affine: t1c.nii.gz's slice axis points against row x column, which a DICOM series cannot
    # express, so the series (and the mask on its grid) run the slices the other way. Check that every
    # voxel centre lands on one of the reference's, then compare in patient coordinates.
    assert labels.shape == reference.shape
    to_reference = np.linalg.inv(reference.affine) @ mask_image.affine
    np.testing.assert_allclose(to_reference, np.rint(to_reference), atol=1e-3)
    labelled = labels > 0
    assert labelled.sum() > 0, "no tumour labelled"
    inside = _share_inside(nib.affines.apply_affine(mask_image.affine, np.argwhere(labelled)), slack, reference.affine)
    print(f"\nraw study by C-STORE: {int(labelled.sum())} labelled voxels, {inside:.1%} inside the case's brain mask "
          f"(+1 voxel); stages {processed['timings_s']}")
    assert inside >= INSIDE_MIN, inside

    response = platform.client.get(f"/api/studies/{uid}/segmentation")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom"
    seg = pydicom.dcmread(io.BytesIO(response.content))
    hd.seg.Segmentation.from_dataset(seg)  # a valid DICOM-SEG
    assert seg.StudyInstanceUID == uid
    seg_points = seg_frame_points_ras(seg)
    assert len(seg_points) == int(labelled.sum())
    assert _share_inside(seg_points, slack, reference.affine) >= INSIDE_MIN


def test_the_right_frontal_lesion_is_labelled(platform: Platform, processed: dict) -> None:
    measurements = platform.client.get(f"/api/studies/{processed['study_instance_uid']}/measurements").json()
    assert measurements["tumour_detected"] is True
    assert measurements["hemisphere"] == "right", measurements
    assert measurements["location"] is not None, measurements.get("location_note")
    assert measurements["location"]["lobes"][0]["name"] == "frontal lobe", measurements["location"]


def test_report_states_the_brain_extraction_and_the_pdf_exists(platform: Platform, processed: dict) -> None:
    uid = processed["study_instance_uid"]
    report = platform.client.get(f"/api/studies/{uid}/report")
    assert report.status_code == 200, report.text
    assert BRAIN_EXTRACTION_NOTE in report.json()["sections"]["findings"]
    pdf = platform.client.get(f"/api/studies/{uid}/report.pdf")
    assert pdf.status_code == 200
    assert pdf.content[:5] == b"%PDF-"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "research use only" in text.lower()


def test_job_timed_the_brain_extraction(processed: dict) -> None:
    for stage in ("fetch", "coregister", "brain_extraction", "normalise", "inference", "postprocess", "outputs"):
        assert processed["timings_s"].get(stage, -1.0) >= 0.0, (stage, processed["timings_s"])
    assert processed["timings_s"]["brain_extraction"] > 0.0


def test_delivered_brain_mask_matches_the_cases(platform: Platform, processed: dict) -> None:
    """The job's brain mask (BIDS derivative `_desc-brain_mask`, nifti_paths["brain_mask"]) from the gateway."""
    assert processed["nifti_paths"]["brain_mask"].endswith("_desc-brain_mask.nii.gz"), processed["nifti_paths"]
    response = platform.client.get(f"/api/studies/{processed['study_instance_uid']}/brain-mask.nii.gz")
    assert response.status_code == 200, response.text
    brain = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    reference = _nifti("t1c_brainmask")
    assert brain.shape == reference.shape
    # on the T1c series' grid: the reference's voxel centres, slices possibly in the other order (see above)
    to_brain = np.rint(np.linalg.inv(brain.affine) @ reference.affine)
    np.testing.assert_allclose(np.linalg.inv(brain.affine) @ reference.affine, to_brain, atol=1e-3)
    on_reference_grid = nib.affines.apply_affine(to_brain, np.indices(reference.shape).reshape(3, -1).T).astype(int)
    brain_on_reference = (np.asanyarray(brain.dataobj) > 0)[tuple(on_reference_grid.T)].reshape(reference.shape)
    score = dice(brain_on_reference, np.asanyarray(reference.dataobj) > 0)
    print(f"\ndelivered brain mask: Dice {score:.4f} against t1c_brainmask.nii.gz")
    assert score >= BRAIN_DICE_MIN, score
