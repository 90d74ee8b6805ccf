"""Every number a clinician reads equals the value recomputed from the delivered DICOM-SEG (issue 17).

For the synthetic demo-like study and two real ones from ../shared/data/real (a skull-stripped BraTS case
and the raw TCGA study as a hospital stores it, which goes through brain extraction), the platform runs
the whole job; the test then takes the SEG from the PACS, puts its frames back on the T1c's own grid, and
recomputes the measurements with the product's `measure` (the registration to the atlas is the job's:
recomputing it is the atlas tests' business). These must agree with that recomputation:

* the measurements the gateway serves (what the viewer's panel shows: tests/frontend and vitest check the
  panel renders them with the report's rounding);
* the report JSON's measurements and every volume and length in its sections;
* the PDF's text: each figure there is one of the recomputed figures, formatted as the report formats them;
* the TID 1500 SR stored in the PACS: the volume of each label.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dicom.read import read_series
from glioscope_common.measurements import REGIONS, Measurements
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.dev.testing import REPO_ROOT, require_path
from glioscope_common.volume import Volume
from glioscope_inference.measure import measure
from glioscope_reporting.reports.formatting import ml, mm, mm2

from .conftest import E2E_ADMIN, MODEL_REPOSITORY, E2ECase, Platform, embedded_platform, upload, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REAL = REPO_ROOT.parent / "shared" / "data" / "real"
CASES = ("synthetic", "brats-gli-00001-000", "tcga-fg-6692-raw")
NIFTI_NAMES = {
    "brats-gli-00001-000": {"T1": "BraTS-GLI-00001-000-t1n", "T1c": "BraTS-GLI-00001-000-t1c",
                            "T2": "BraTS-GLI-00001-000-t2w", "FLAIR": "BraTS-GLI-00001-000-t2f"},
    "tcga-fg-6692-raw": {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"},
}


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    yield from embedded_platform("consistency", request, tmp_path_factory)


def _real_study_files(name: str, folder: Path) -> list[Path]:
    source = REAL / name
    require_path(source, "../shared/data/real")
    images = {}
    for role, stem in NIFTI_NAMES[name].items():
        image = nib.load(str(source / f"{stem}.nii.gz"))
        images[role] = Volume(np.asarray(image.dataobj, dtype=np.float32), np.asarray(image.affine, dtype=float))
    write_study(images, folder, patient_id=f"CONS-{name[:20]}", patient_name="Consistency^Test",
                study_description=f"MR BRAIN {name}", seed=sum(map(ord, name)))
    return sorted(folder.rglob("*.dcm"))


@pytest.fixture(scope="module", params=CASES)
def processed(request: pytest.FixtureRequest, platform: Platform, e2e_case: E2ECase,
              tmp_path_factory: pytest.TempPathFactory) -> dict:
    files = e2e_case.files if request.param == "synthetic" else _real_study_files(
        request.param, tmp_path_factory.mktemp(request.param))
    response = upload(platform.client, files)
    assert response.status_code == 201, response.text
    job = wait_for_job(platform.client, response.json()["job"]["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    return {**job, "case": request.param, "study_instance_uid": response.json()["study"]["study_instance_uid"]}


def _labels_from_seg(seg: pydicom.Dataset, t1c: Volume) -> np.ndarray:
    """The SEG's frames put back on the T1c grid (data[column, row, slice], as read_series orders voxels)."""
    values = {}
    for item in seg.SegmentSequence:
        match = re.fullmatch(r"glioscope-label-(\d+)", str(item.TrackingID))
        assert match, item.TrackingID
        values[int(item.SegmentNumber)] = int(match.group(1))
    labels = np.zeros(t1c.shape, np.uint8)
    pixels = seg.pixel_array
    pixels = pixels[None] if pixels.ndim == 2 else pixels
    inverse = np.linalg.inv(t1c.affine)
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        lps = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        ijk = inverse[:3, :3] @ (lps * np.array([-1.0, -1.0, 1.0])) + inverse[:3, 3]
        assert np.allclose(ijk[:2], 0, atol=1e-3), ijk  # every frame covers the whole source slice
        k = int(round(ijk[2]))
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        rows, columns = np.nonzero(frame)
        assert not labels[columns, rows, k].any(), "two segments claim one voxel"
        labels[columns, rows, k] = values[segment]
    return labels


@pytest.fixture(scope="module")
def recomputed(platform: Platform, processed: dict) -> Measurements:
    uid = processed["study_instance_uid"]
    with platform.orthanc.dicomweb() as pacs:
        t1c = read_series(pacs.retrieve_series(uid, processed["sequence_series"]["T1c"]))
        seg = pacs.retrieve_instance(uid, processed["seg_series_instance_uid"], processed["seg_sop_instance_uid"])
    hd.seg.Segmentation.from_dataset(seg)  # a valid SEG
    served = Measurements.model_validate(processed["measurements"])
    metadata = ModelMetadata.load(MODEL_REPOSITORY / "glioscope_unet")
    return measure(_labels_from_seg(seg, t1c), t1c.affine, metadata, registration=served.atlas_registration)


def _same_measurements(served: Measurements, recomputed: Measurements) -> None:
    assert {v.label: v.volume_ml for v in served.label_volumes} == pytest.approx(
        {v.label: v.volume_ml for v in recomputed.label_volumes}, abs=1e-9)
    assert served.region_volumes_ml == pytest.approx(recomputed.region_volumes_ml, abs=1e-9)
    assert served.max_axial_diameter_mm == pytest.approx(recomputed.max_axial_diameter_mm, abs=1e-6)
    assert served.perpendicular_diameter_mm == pytest.approx(recomputed.perpendicular_diameter_mm, abs=1e-6)
    assert served.bidimensional_product_mm2 == pytest.approx(recomputed.bidimensional_product_mm2, abs=1e-6)
    assert served.hemisphere == recomputed.hemisphere
    assert served.location == recomputed.location


def _figures(m: Measurements) -> dict[str, str]:
    figures = {f"label {v.label}": ml(v.volume_ml) for v in m.label_volumes}
    figures |= {key: ml(m.region_volumes_ml[key]) for key in REGIONS}
    if m.tumour_detected:
        figures |= {"diameter": mm(m.max_axial_diameter_mm), "perpendicular": mm(m.perpendicular_diameter_mm),
                    "product": mm2(m.bidimensional_product_mm2)}
    return figures


def test_served_measurements_are_the_segs(platform: Platform, processed: dict, recomputed: Measurements) -> None:
    uid = processed["study_instance_uid"]
    served = platform.client.get(f"/api/studies/{uid}/measurements")
    assert served.status_code == 200, served.text
    served_measurements = Measurements.model_validate(served.json())
    _same_measurements(served_measurements, recomputed)
    assert recomputed.tumour_detected, processed["case"]
    # the measured slice is named by the T1c instance at that position
    assert served_measurements.measured_on is not None
    assert served_measurements.measured_on.series_instance_uid == processed["sequence_series"]["T1c"]
    assert served_measurements.measured_on.instance_number is not None
    if processed["case"] == "tcga-fg-6692-raw":  # the visible right frontal lesion, found inside the brain
        assert recomputed.hemisphere == "right" and recomputed.location is not None
        assert recomputed.location.lobes[0].name == "frontal lobe"


def _admin(platform: Platform) -> dict[str, str]:
    response = platform.client.post("/api/auth/token", data={"username": E2E_ADMIN[0], "password": E2E_ADMIN[1]},
                                    headers={"x-api-key": ""})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}", "x-api-key": ""}


def test_report_pdf_and_sr_quote_the_segs_figures(platform: Platform, processed: dict, recomputed: Measurements) -> None:
    uid = processed["study_instance_uid"]
    report = platform.client.get(f"/api/studies/{uid}/report").json()
    _same_measurements(Measurements.model_validate(report["measurements"]), recomputed)
    figures = _figures(recomputed)
    text = " ".join(report["sections"].values())
    for key in ("WT", "TC", "ET", "diameter", "perpendicular", "product"):
        if key in figures and recomputed.region_volumes_ml["WT"] >= 0.5:
            assert figures[key] in text, (key, figures[key])
    quoted = set(re.findall(r"\d+\.\d (?:mL|mm²|mm)", text))
    assert quoted <= set(figures.values()), quoted - set(figures.values())

    pdf = platform.client.get(f"/api/studies/{uid}/report.pdf")
    assert pdf.status_code == 200
    pdf_text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    pdf_text = re.sub(r"\s+", " ", pdf_text)
    for key, figure in figures.items():
        assert figure in pdf_text, (key, figure)
    in_pdf = set(re.findall(r"\d+\.\d (?:mL|mm²|mm)", pdf_text))
    assert in_pdf <= set(figures.values()), in_pdf - set(figures.values())

    exported = platform.client.post(f"/api/studies/{uid}/report/export", headers=_admin(platform))
    assert exported.status_code == 200, exported.text
    export = exported.json()["export"]
    with platform.orthanc.dicomweb() as pacs:
        sr = pacs.retrieve_instance(uid, export["sr_series_instance_uid"], export["sr_sop_instance_uid"])
    volumes = {}
    for group in hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups():
        label = int(group.tracking_identifier.split()[1])  # "Label <value> <name>"
        (volume,) = [m for m in group.get_measurements() if m.name.meaning == "Volume"]
        assert volume.unit.value == "ml"
        volumes[label] = float(volume.value)
    assert volumes == pytest.approx({v.label: v.volume_ml for v in recomputed.label_volumes}, abs=1e-3)
