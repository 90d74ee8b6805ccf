"""Studies with missing sequences through the real platform (issue 16, item 2): uploaded through the gateway,
segmented (not parked as incomplete), a SEG whose segments are the regions the sequences support
(glioscope_common.sequence_regions), and a report that says which sequences were used and which regions
are not reported, with no enhancement claim without a T1c. Structure and wording only: accuracy per
subset is the lead's measurement (docs/model-card.md)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pypdf import PdfReader

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.volume import Volume

from .conftest import E2E_SHAPE, Platform, embedded_platform, segment

ENHANCEMENT_CLAIM = re.compile(r"(enhancing lesion|contrast enhancement: (present|absent)|necrosis: (present|absent)|"
                               r"necrotic core|high-grade glioma|rim enhancement|solid enhancement)", re.IGNORECASE)


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    yield from embedded_platform("missing-sequences", request, tmp_path_factory)


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    from glioscope_training.synth import generate_case

    return generate_case(seed=161602, shape=E2E_SHAPE)


def subset_study(case, roles: tuple[str, ...], folder: Path, seed: int) -> list[Path]:  # type: ignore[no-untyped-def]
    images = {role: Volume(np.asarray(case.images[role], dtype=np.float32), case.affine) for role in roles}
    write_study(images, folder, patient_id=f"SUBSET{seed}", patient_name="Subset^Sequences",
                study_description="MR BRAIN subset", seed=seed)
    return sorted(folder.rglob("*.dcm"))


def study_outputs(platform: Platform, study_uid: str) -> tuple[dict, pydicom.Dataset, dict, str]:
    client = platform.client
    study = client.get(f"/api/studies/{study_uid}").json()
    seg = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{study_uid}/segmentation").content))
    report = client.get(f"/api/studies/{study_uid}/report").json()
    pdf = client.get(f"/api/studies/{study_uid}/report.pdf")
    assert pdf.status_code == 200
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    return study, seg, report, text


def test_a_flair_and_t1c_study_is_segmented_with_every_region(platform: Platform, case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = segment(platform, subset_study(case, ("T1c", "FLAIR"), tmp_path, seed=1))
    assert job["sequence_series"].keys() == {"T1c", "FLAIR"}
    study_uid = pydicom.dcmread(next(tmp_path.rglob("*.dcm"))).StudyInstanceUID
    study, seg, report, pdf = study_outputs(platform, study_uid)
    assert study["status"] == "ready" and study["missing_sequences"] == ["T1", "T2"]
    m = job["measurements"]
    assert m["sequences_used"] == ["T1c", "FLAIR"] and m["regions_reported"] == ["WT", "TC", "ET"]
    assert [item.TrackingID for item in seg.SegmentSequence] == [f"glioscope-label-{v}" for v in (1, 2, 3)]
    assert {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence} == {job["sequence_series"]["T1c"]}
    sentence = "Sequences used: T1c, FLAIR; not available: T1, T2; all regions reported."
    assert report["sections"]["findings"].startswith(sentence)
    assert "Sequences used" in pdf and "T1, T2" in pdf


def test_a_study_without_t1c_reports_the_whole_tumour_only(platform: Platform, case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job = segment(platform, subset_study(case, ("T1", "T2", "FLAIR"), tmp_path, seed=2))
    study_uid = pydicom.dcmread(next(tmp_path.rglob("*.dcm"))).StudyInstanceUID
    study, seg, report, pdf = study_outputs(platform, study_uid)
    assert study["status"] == "ready" and study["missing_sequences"] == ["T1c"]
    m = job["measurements"]
    assert m["regions_reported"] == ["WT"] and set(m["regions_not_reported"]) == {"TC", "ET"}
    assert list(m["region_volumes_ml"]) == ["WT"]
    # one whole-tumour segment on the FLAIR's grid: no enhancing or necrosis segment is claimed
    assert [item.TrackingID for item in seg.SegmentSequence] == ["glioscope-label-5"]
    assert seg.SegmentSequence[0].SegmentLabel.startswith("Whole tumour")
    assert {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence} == {job["sequence_series"]["FLAIR"]}
    findings = report["sections"]["findings"]
    assert findings.startswith("Sequences used: T1, T2, FLAIR; not available: T1c; regions not reported: tumour core "
                               "(TC) and enhancing tumour (ET), because there is no post-contrast T1 (T1c)")
    text = " ".join(report["sections"].values())
    assert not ENHANCEMENT_CLAIM.search(text), ENHANCEMENT_CLAIM.search(text)
    assert "Sequences not available" in pdf and not ENHANCEMENT_CLAIM.search(pdf)


def test_a_t2_only_study_is_refused_naming_what_is_needed(platform: Platform, case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = subset_study(case, ("T2",), tmp_path, seed=3)
    response = platform.client.post("/api/studies", files=[("files", (p.name, p.read_bytes(), "application/dicom"))
                                                           for p in files], timeout=300)
    assert response.status_code == 422, response.text
    assert "needs a T1c or a FLAIR" in response.json()["detail"]
