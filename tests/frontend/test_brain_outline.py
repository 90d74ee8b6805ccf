"""The brain mask outline in a real browser (issue 15, item 1): a segmented study whose job lists a brain mask
shows the "Brain mask outline" toggle; checked, a cyan outline (no fill) appears on the three MPR views with the
tumour's colours still visible, the brush still paints the tumour, and unchecked the outline goes.

The synthetic study is skull-stripped, so the worker runs no brain extraction on it: the test stores a brain
mask for its job the way the worker does (the worker's NIfTI writer, the NIfTI service, the BIDS derivative
path, `nifti_paths["brain_mask"]` in the job record) — the tumour labels dilated by 6 voxels, so that the
outline lies on the tumour's slices. Runs frontend/e2e/brain-outline.spec.mjs (playwright-core + Debian's
chromium); skips like test_viewer.py without node or chromium (fails with CI=true)."""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from glioscope_common.db import make_engine, make_session_factory, session_scope
from glioscope_common.records.models import Job
from glioscope_common.volume import Volume

from .conftest import e2e
from .test_viewer import ARTIFACTS, CHROMIUM, FRONTEND, frontend_dist, platform  # noqa: F401 (fixtures: a platform of its own)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER = ("dr-brain-outline", "dr-brain-outline-password-1")


def _store_brain_mask(platform: e2e.Platform, uid: str, job: dict) -> str:
    from glioscope_inference.segmentation.clients import NiftiClient
    from glioscope_inference.segmentation.service import nifti_bytes

    dseg = nib.Nifti1Image.from_bytes(gzip.decompress(platform.client.get(f"/api/studies/{uid}/mask.nii.gz").content))
    brain = ndimage.binary_dilation(np.asarray(dseg.dataobj) > 0, iterations=6).astype(np.uint8)
    path = job["nifti_paths"]["mask"].replace("_space-orig_dseg", "_space-orig_desc-brain_mask")
    nifti = NiftiClient(f"http://127.0.0.1:{platform.stack.ports['nifti']}", platform.env["GLIOSCOPE_SERVICE_TOKEN"])
    try:
        nifti.put_file(path, nifti_bytes(Volume(brain, dseg.affine), np.uint8))
    finally:
        nifti.close()
    engine = make_engine(platform.env["GLIOSCOPE_DATABASE_URL"])
    try:
        with session_scope(make_session_factory(engine)) as session:
            record = session.get(Job, job["id"])
            record.nifti_paths = {**record.nifti_paths, "brain_mask": path}
    finally:
        engine.dispose()
    return path


def test_the_brain_mask_outline_in_the_viewer(platform: e2e.Platform, e2e_case: e2e.E2ECase) -> None:
    client = platform.client
    job = e2e.segment(platform, e2e_case.files)
    uid = e2e_case.study_instance_uid
    assert client.get(f"/api/studies/{uid}/brain-mask.nii.gz").status_code == 404  # skull-stripped: none yet
    _store_brain_mask(platform, uid, job)
    served = client.get(f"/api/studies/{uid}/brain-mask.nii.gz")
    assert served.status_code == 200 and served.content[:2] == b"\x1f\x8b"

    signed_in = client.post("/api/auth/token", data=dict(zip(("username", "password"), e2e.E2E_ADMIN)), headers={"x-api-key": ""})
    as_admin = {"authorization": f"Bearer {signed_in.json()['access_token']}", "x-api-key": ""}
    radiologist = {"username": USER[0], "password": USER[1], "role": "radiologist",
                   "projects": [client.get(f"/api/studies/{uid}").json()["project"]]}
    assert client.post("/api/admin/users", headers=as_admin, json=radiologist).status_code in (201, 409)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["node", "e2e/brain-outline.spec.mjs"], cwd=FRONTEND, capture_output=True, text=True, timeout=300,
        env={**os.environ, "GLIOSCOPE_URL": platform.stack.gateway_url, "GLIOSCOPE_USERNAME": USER[0],
             "GLIOSCOPE_PASSWORD": USER[1], "GLIOSCOPE_STUDY_UID": uid, "GLIOSCOPE_ARTIFACTS": str(ARTIFACTS),
             "CHROMIUM_PATH": CHROMIUM},
    )
    print(run.stdout)
    assert run.returncode == 0 and "BRAIN OUTLINE OK" in run.stdout, f"{run.stdout}\n{run.stderr}\n{platform.stack.logs()}"
