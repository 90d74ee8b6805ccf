"""Issue 16, item 4: two model versions run on the same study through the gateway, each SEG and job
row naming the version that made it; an unknown version is refused before anything is queued.

Embedded configuration (onnxruntime in the worker: the version's own ONNX file); Triton serving
each version is checked in services/common/tests/test_model_versions_triton.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from glioscope_common.model_metadata import model_versions

from .conftest import MODEL_REPOSITORY, E2ECase, Platform, embedded_platform, segment, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.services]

OLDER = "0.3.1"


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    yield from embedded_platform("versions", request, tmp_path_factory)


def seg_algorithm_versions(platform: Platform, study_uid: str, job: dict) -> set[str]:
    """AlgorithmVersion of every segment of the job's DICOM-SEG, read back from the PACS."""
    seg = platform.orthanc.dicomweb().retrieve_instance(study_uid, job["seg_series_instance_uid"], job["seg_sop_instance_uid"])
    return {str(item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion) for item in seg.SegmentSequence}


def test_the_model_versions_are_listed(platform: Platform) -> None:
    listed = platform.client.get("/api/models")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [v["version"] for v in body] == [v.metadata.version for v in model_versions(MODEL_REPOSITORY / "glioscope_unet")]
    assert OLDER in [v["version"] for v in body] and [v["newest"] for v in body][-1] is True
    older = next(v for v in body if v["version"] == OLDER)
    assert older["triton_version"] == "1" and older["accuracy"]["synthetic_heldout_n"] == 12


def test_two_versions_on_the_same_study(platform: Platform, e2e_case: E2ECase) -> None:
    newest = model_versions(MODEL_REPOSITORY / "glioscope_unet")[-1].metadata.version
    assert newest != OLDER
    default_job = segment(platform, e2e_case.files)  # the upload's job: the worker's default, the newest
    study_uid = e2e_case.study_instance_uid

    unknown = platform.client.post(f"/api/studies/{study_uid}/jobs", json={"model_version": "9.9.9"})
    assert unknown.status_code == 400, unknown.text
    assert "unknown model version '9.9.9'" in unknown.json()["detail"] and OLDER in unknown.json()["detail"]

    created = platform.client.post(f"/api/studies/{study_uid}/jobs", json={"model_version": OLDER})
    assert created.status_code == 201, created.text
    assert created.json()["model_version"] == OLDER  # recorded on the row from the start
    older_job = wait_for_job(platform.client, created.json()["id"])
    assert older_job["state"] == "succeeded", f"{older_job['error']}\n{platform.stack.logs()}"

    assert default_job["model_version"] == newest and older_job["model_version"] == OLDER
    assert seg_algorithm_versions(platform, study_uid, default_job) == {newest}
    assert seg_algorithm_versions(platform, study_uid, older_job) == {OLDER}
    versions = platform.client.get(f"/api/studies/{study_uid}/segmentation/versions").json()
    assert versions[0]["job_id"] == older_job["id"] and versions[0]["model_version"] == OLDER
