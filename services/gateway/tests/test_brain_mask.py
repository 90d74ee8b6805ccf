"""GET /api/studies/{uid}/brain-mask.nii.gz: the job's brain mask from the NIfTI service (nifti_paths["brain_mask"],
written by the worker when brain extraction ran), 404 when the job has none (skull-stripped input)."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from glioscope_common.db import session_scope
from glioscope_common.records.models import Job, JobState

from .conftest import as_files, small_study

BRAIN = "derivatives/glioscope/sub-a/ses-b/anat/sub-a_ses-b_space-orig_desc-brain_mask.nii.gz"


def test_the_brain_mask_is_served_when_brain_extraction_ran(gateway: TestClient, tmp_path: Path) -> None:
    uploaded = gateway.post("/api/studies", files=as_files(small_study(tmp_path / "s", seed=21)))
    assert uploaded.status_code in (200, 201), uploaded.text
    uid, job_id = uploaded.json()["study"]["study_instance_uid"], uploaded.json()["job"]["id"]
    url = f"/api/studies/{uid}/brain-mask.nii.gz"
    assert gateway.get(url).status_code == 404  # no finished job yet

    container = gateway.app.state.container  # type: ignore[attr-defined]
    asked: list[str] = []

    def nifti_service(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, content=b"\x1f\x8bbrain") if request.url.path.endswith(BRAIN) else httpx.Response(404)

    container.services_http = httpx.AsyncClient(transport=httpx.MockTransport(nifti_service))

    def finish(paths: dict[str, str]) -> None:
        with session_scope(container.sessions) as session:
            job = session.get(Job, job_id)
            job.state, job.nifti_paths = JobState.succeeded, paths

    dseg = BRAIN.replace("_desc-brain_mask", "_dseg")
    finish({"mask": dseg})  # skull-stripped input: no brain extraction, no brain mask
    response = gateway.get(url)
    assert response.status_code == 404 and "no brain extraction" in response.json()["detail"], response.text
    assert asked == []

    finish({"mask": dseg, "brain_mask": BRAIN})
    response = gateway.get(url)
    assert response.status_code == 200, response.text
    assert response.content == b"\x1f\x8bbrain" and response.headers["content-type"] == "application/gzip"
    assert 'filename="brain-mask.nii.gz"' in response.headers["content-disposition"]
    assert asked == [f"/api/nifti/files/{BRAIN}"]
