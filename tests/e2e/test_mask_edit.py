"""A clinician corrects the model's tumour mask and saves it: a new DICOM-SEG version through the
gateway (who and when recorded, the previous version kept), measurements recomputed.

Run with the production parts (Postgres, RabbitMQ, Redis, Triton) and with the embedded defaults
(SQLite, kombu's SQLAlchemy broker, onnxruntime); Orthanc is real in both. The edit is
posted exactly as the viewer does it: the labels on the T1c grid in Cornerstone3D's layout and
geometry (built here from the DICOM instances, independently of the gateway's code).
"""

from __future__ import annotations

import base64
import gzip
import io
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from kombu import Connection

from glioscope_common.dicom import LPS_TO_RAS
from glioscope_common.dicom.read import read_series
from glioscope_common.labelmap import encode_labels
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.testing import cornerstone_geometry, fresh_postgres_database, require_service
from glioscope_inference.dicom_seg import read_segmentation

from .conftest import E2E_ADMIN, E2ECase, Platform, platform_env, seg_frame_points_ras, start_platform, upload, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.services]

CLINICIAN = ("dr-editor", "dr-editor-password-1", "clinician")
RESEARCHER = ("dr-research", "dr-research-password-1", "researcher")
RADIOLOGIST = ("dr-signer", "dr-signer-password-1", "radiologist")


@pytest.fixture(scope="module", params=["services", "embedded"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp(f"platform-edit-{request.param}")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    orthanc.start()
    stack = ExitStack()
    try:
        # Its own Postgres database: the flow tests upload the same study to the session's database.
        database_url = stack.enter_context(fresh_postgres_database("glioscope_edit")) if request.param == "services" else None
        env = platform_env(request.param, tmp, request, database_url)
        # test_a_lost_edit_message_is_recovered: the watcher re-enqueues a job silent this long
        env["GLIOSCOPE_REQUEUE_AFTER_S"] = "20"
        yield from start_platform(tmp, env, orthanc)
    finally:
        stack.close()
        orthanc.stop()


def bearer(platform: Platform, username: str, password: str) -> dict[str, str]:
    response = platform.client.post("/api/auth/token", data={"username": username, "password": password},
                                    headers={"x-api-key": ""})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}", "x-api-key": ""}


@dataclass
class Edit:
    uid: str
    t1c_uid: str
    sources: list[pydicom.Dataset]  # the T1c instances from the PACS
    geometry: dict
    before: np.ndarray  # version 1 rasterised onto the T1c grid [i, j, k]
    after: np.ndarray  # what the clinician saved
    painted: np.ndarray  # (N, 3) voxels set to 3 (background before)
    erased: np.ndarray  # (M, 3) voxels set to 0 (tumour before)
    headers: dict[str, str]  # the clinician's
    created: dict
    job: dict


def post_edit(platform: Platform, uid: str, headers: dict[str, str], **body: object):  # type: ignore[no-untyped-def]
    return platform.client.post(f"/api/studies/{uid}/segmentation/versions", json=body, headers=headers)


@pytest.fixture(scope="module")
def edit(platform: Platform, e2e_case: E2ECase) -> Edit:
    response = upload(platform.client, e2e_case.files)
    assert response.status_code == 201, response.text
    job = wait_for_job(platform.client, response.json()["job"]["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    uid, t1c_uid = e2e_case.study_instance_uid, job["sequence_series"]["T1c"]

    admin = bearer(platform, *E2E_ADMIN)
    for username, password, role in (CLINICIAN, RESEARCHER, RADIOLOGIST):
        created = platform.client.post("/api/admin/users", headers=admin, json={
            "username": username, "password": password, "role": role, "projects": ["default"]})
        assert created.status_code == 201, created.text
    headers = bearer(platform, *CLINICIAN[:2])

    # What the viewer has: the T1c instances and the model's SEG, rasterised onto the T1c grid.
    sources = platform.orthanc.dicomweb().retrieve_series(uid, t1c_uid)
    seg = platform.client.get(f"/api/studies/{uid}/segmentation", headers=headers)
    assert seg.status_code == 200, seg.text
    before = read_segmentation(pydicom.dcmread(io.BytesIO(seg.content)), sources)
    assert before.shape == e2e_case.t1c.shape and (before > 0).any()

    # Paint a block of enhancing tumour into background, erase the tumour from a block inside it.
    after = before.copy()
    centre = np.argwhere(before > 0).mean(axis=0).round().astype(int)
    paint = (slice(4, 12), slice(6, 14), slice(5, 9))  # far from the tumour, in the image corner
    assert not before[paint].any()
    after[paint] = 3
    erase = tuple(slice(c - 3, c + 3) for c in centre)
    after[erase] = 0
    painted = np.argwhere((after == 3) & (before == 0))
    erased = np.argwhere((after == 0) & (before > 0))
    assert len(painted) == 8 * 8 * 4 and len(erased) > 0

    geometry = cornerstone_geometry(sources)
    labels = base64.b64encode(encode_labels(after)).decode()
    created = post_edit(platform, uid, headers, base_version=1, source_series_instance_uid=t1c_uid,
                        geometry=geometry, labels=labels)
    assert created.status_code == 202, created.text
    assert created.json()["version"] == 2
    edit_job = wait_for_job(platform.client, created.json()["job_id"], timeout_s=180)
    assert edit_job["state"] == "succeeded", f"{edit_job['error']}\n{platform.stack.logs()}"
    return Edit(uid, t1c_uid, sources, geometry, before, after, painted, erased, headers, created.json(), edit_job)


def counts(labels: np.ndarray) -> dict[str, int]:
    return {str(v): int((labels == v).sum()) for v in (1, 2, 3)}


def test_versions_record_who_and_when(platform: Platform, edit: Edit) -> None:
    versions = platform.client.get(f"/api/studies/{edit.uid}/segmentation/versions", headers=edit.headers).json()
    assert [v["version"] for v in versions] == [1, 2]
    model, edited = versions
    assert (model["source"], edited["source"]) == ("model", "edited")
    assert edited["created_by"] == CLINICIAN[0]
    assert edited["created_at"] >= model["created_at"]
    assert edited["job_id"] == edit.created["job_id"] == edit.job["id"]
    assert edited["state"] == "succeeded"
    assert edited["seg_series_instance_uid"] != model["seg_series_instance_uid"]
    assert model["voxel_counts"] == counts(edit.before)
    assert edited["voxel_counts"] == counts(edit.after)
    painted_3 = len(edit.painted)
    assert edited["voxel_counts"]["3"] - model["voxel_counts"]["3"] == painted_3 - int((edit.before[tuple(edit.erased.T)] == 3).sum())


def test_the_new_seg_is_a_valid_new_series(platform: Platform, edit: Edit, tmp_path: Path) -> None:
    response = platform.client.get(f"/api/studies/{edit.uid}/segmentation", headers=edit.headers)  # the latest
    assert response.status_code == 200
    path = tmp_path / "seg-v2.dcm"
    path.write_bytes(response.content)
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(path))
    old = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(
        platform.client.get(f"/api/studies/{edit.uid}/segmentation?version=1", headers=edit.headers).content)))
    assert seg.SeriesInstanceUID == edit.job["seg_series_instance_uid"] != old.SeriesInstanceUID
    assert seg.StudyInstanceUID == edit.uid
    assert int(seg.SeriesNumber) > int(old.SeriesNumber)
    assert seg.SeriesDescription == "Glioscope tumour segmentation v2 (edited)"
    assert str(seg.ContentCreatorName).rstrip("^") == CLINICIAN[0]
    assert {str(item.SeriesInstanceUID) for item in seg.ReferencedSeriesSequence} == {edit.t1c_uid}
    same = ("SegmentNumber", "SegmentLabel", "TrackingID")
    assert [[str(s.get(k)) for k in same] for s in seg.SegmentSequence] == [[str(s.get(k)) for k in same] for s in old.SegmentSequence]
    codes = lambda s: [(c.SegmentedPropertyTypeCodeSequence[0].CodeValue, c.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator) for c in s.SegmentSequence]  # noqa: E731
    assert codes(seg) == codes(old)
    assert {str(s.SegmentAlgorithmType) for s in seg.SegmentSequence} == {"SEMIAUTOMATIC"}

    # Voxel for voxel what was saved; per segment changed by exactly what was painted and erased.
    np.testing.assert_array_equal(read_segmentation(seg, edit.sources), edit.after)
    delta = {label: counts(edit.after)[label] - counts(edit.before)[label] for label in ("1", "2", "3")}
    erased_labels = edit.before[tuple(edit.erased.T)]
    assert delta == {"1": -int((erased_labels == 1).sum()), "2": -int((erased_labels == 2).sum()),
                     "3": len(edit.painted) - int((erased_labels == 3).sum())}

    if shutil.which("dciodvfy") is None:
        require_service("dciodvfy", "install the Debian package dicom3tools")
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], errors


def test_the_previous_version_is_kept(platform: Platform, edit: Edit) -> None:
    response = platform.client.get(f"/api/studies/{edit.uid}/segmentation", params={"version": 1}, headers=edit.headers)
    assert response.status_code == 200
    old = pydicom.dcmread(io.BytesIO(response.content))
    np.testing.assert_array_equal(read_segmentation(old, edit.sources), edit.before)
    # both series are in the PACS
    series = platform.orthanc.dicomweb().search_series(edit.uid)
    seg_series = {item["0020000E"]["Value"][0] for item in series if item["00080060"]["Value"][0] == "SEG"}
    assert seg_series == {str(old.SeriesInstanceUID), edit.job["seg_series_instance_uid"]}
    assert platform.client.get(f"/api/studies/{edit.uid}/segmentation", params={"version": 3},
                               headers=edit.headers).status_code == 404


def test_measurements_are_recomputed(platform: Platform, edit: Edit) -> None:
    measurements = platform.client.get(f"/api/studies/{edit.uid}/measurements", headers=edit.headers).json()
    assert measurements == edit.job["measurements"]
    voxel_ml = abs(np.linalg.det(read_series(edit.sources).affine[:3, :3])) / 1000
    by_label = {item["label"]: item["volume_ml"] for item in measurements["label_volumes"]}
    for label in (1, 2, 3):
        assert by_label[label] == pytest.approx((edit.after == label).sum() * voxel_ml, rel=1e-9)
        # the volume difference to the unedited mask on the same grid: the edited voxels x voxel volume
        difference = ((edit.after == label).sum() - (edit.before == label).sum()) * voxel_ml
        assert by_label[label] - (edit.before == label).sum() * voxel_ml == pytest.approx(difference, abs=1e-9)
    assert measurements["region_volumes_ml"]["WT"] == pytest.approx((edit.after > 0).sum() * voxel_ml, rel=1e-9)
    assert measurements["region_volumes_ml"]["ET"] == pytest.approx((edit.after == 3).sum() * voxel_ml, rel=1e-9)
    assert measurements["tumour_detected"] and measurements["max_axial_diameter_mm"] > 0
    assert measurements["hemisphere"] in ("left", "right", "bilateral", "midline", "undetermined")


def test_the_report_follows_the_new_version(platform: Platform, edit: Edit) -> None:
    """The model run's report now describes SEG version 2: its reference, measurements, text, PDF."""
    report = platform.client.get(f"/api/studies/{edit.uid}/report", headers=edit.headers).json()
    assert report["segmentation"]["version"] == 2
    assert report["segmentation"]["sop_instance_uid"] == edit.job["seg_sop_instance_uid"]
    assert report["segmentation"]["source_series"][0]["series_instance_uid"] == edit.t1c_uid
    assert report["measurements"] == edit.job["measurements"]
    wt = edit.job["measurements"]["region_volumes_ml"]["WT"]
    assert f"Whole tumour (WT) {wt:.1f} mL" in report["sections"]["findings"]
    versions = platform.client.get(f"/api/studies/{edit.uid}/report/versions", headers=edit.headers).json()["versions"]
    assert versions[-1]["action"] == "segmentation:v2"
    pdf = platform.client.get(f"/api/studies/{edit.uid}/report.pdf", headers=edit.headers)
    from pypdf import PdfReader

    assert f"{wt:.1f} mL" in " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)


def test_painted_voxels_keep_their_patient_coordinates(platform: Platform, edit: Edit) -> None:
    """The painted voxels, placed by the viewer's geometry, are where the new SEG's frames put them."""
    g = edit.geometry
    direction = np.array(g["direction"], dtype=float).reshape(3, 3)
    lps = np.array(g["origin"]) + (edit.painted * np.array(g["spacing"])) @ direction
    painted_ras = lps * np.array([-1.0, -1.0, 1.0])

    def labelled_points(version: int) -> set[tuple[float, ...]]:
        content = platform.client.get(f"/api/studies/{edit.uid}/segmentation", params={"version": version},
                                      headers=edit.headers).content
        return {tuple(p) for p in np.round(seg_frame_points_ras(pydicom.dcmread(io.BytesIO(content))), 2)}

    added = labelled_points(2) - labelled_points(1)
    assert len(added) == len(edit.painted)
    expected = {tuple(p) for p in np.round(painted_ras, 2)}
    assert len(added ^ expected) == 0 or np.allclose(sorted(added), sorted(expected), atol=0.011)


def test_the_mask_nifti_is_the_latest_version(platform: Platform, edit: Edit) -> None:
    response = platform.client.get(f"/api/studies/{edit.uid}/mask.nii.gz", headers=edit.headers)
    assert response.status_code == 200
    image = nib.Nifti1Image.from_bytes(gzip.decompress(response.content))
    np.testing.assert_array_equal(np.asarray(image.dataobj), edit.after)
    np.testing.assert_allclose(image.affine, read_series(edit.sources).affine, atol=1e-3)
    assert "desc-v2edited_dseg.nii.gz" in edit.job["nifti_paths"]["mask"]


def test_the_edit_job_is_a_normal_job(platform: Platform, edit: Edit) -> None:
    with platform.client.stream("GET", f"/api/jobs/{edit.job['id']}/events", headers=edit.headers) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"state": "succeeded"' in events[-1]
    study = platform.client.get(f"/api/studies/{edit.uid}", headers=edit.headers).json()
    assert study["latest_job"]["id"] != edit.job["id"]  # the worklist shows the segmentation job


def test_refusals(platform: Platform, edit: Edit) -> None:
    uid, headers = edit.uid, edit.headers
    good = dict(base_version=2, source_series_instance_uid=edit.t1c_uid, geometry=edit.geometry,
                labels=base64.b64encode(encode_labels(edit.after)).decode())
    n = int(np.prod(edit.after.shape))

    def refused(status: int, fragment: str, study: str = uid, who: dict[str, str] = headers, **change: object) -> None:
        response = post_edit(platform, study, who, **{**good, **change})
        assert response.status_code == status, response.text
        assert fragment in str(response.json()["detail"]), response.text

    refused(409, "not the latest version (2)", base_version=1)
    refused(422, "base64", labels="this is not base64!")
    refused(422, "not valid gzip", labels=base64.b64encode(b"plain bytes").decode())
    refused(422, f"need {n}", labels=base64.b64encode(gzip.compress(bytes(n - 1))).decode())
    refused(422, "labels must be 0..5; found [7]",
            labels=base64.b64encode(gzip.compress(bytes(n - 1) + b"\x07")).decode())
    bomb = gzip.compress(bytes(1024**3), compresslevel=9)
    assert len(bomb) < 2 * 1024**2
    refused(422, "decompress to more than", labels=base64.b64encode(bomb).decode())
    shifted = {**edit.geometry, "origin": [edit.geometry["origin"][0] + 2.0, *edit.geometry["origin"][1:]]}
    refused(422, "off the source series", geometry=shifted)
    swapped = {**edit.geometry, "dimensions": list(reversed(edit.geometry["dimensions"]))}
    refused(422, "dimensions", geometry=swapped)
    refused(422, "not a series of this study", source_series_instance_uid="1.2.3.4.5.6")
    refused(404, "no such study", study="1.2.3.999")
    researcher = bearer(platform, *RESEARCHER[:2])
    refused(403, "researcher", who=researcher)
    # nothing of the above made a version
    versions = platform.client.get(f"/api/studies/{uid}/segmentation/versions", headers=headers).json()
    assert [v["version"] for v in versions] == [1, 2]
    audit = platform.client.get("/api/admin/audit", params={"study_instance_uid": uid, "action": "edited"},
                                headers=bearer(platform, *E2E_ADMIN)).json()
    assert {(e["actor"], e["outcome"]) for e in audit} >= {(CLINICIAN[0], "ok"), (CLINICIAN[0], "refused"),
                                                             (RESEARCHER[0], "denied")}


def test_a_lost_edit_message_is_recovered(platform: Platform, edit: Edit) -> None:
    """Runs last (it adds version 3). The worker is down when the edit is saved and the broker then
    loses the message: the rows committed by the gateway are enough; the watcher re-enqueues the
    job (as a segmentation task, which hands edit jobs to the edit code) and it completes once."""
    after = edit.after.copy()
    after[tuple(edit.painted.T)] = 2  # the painted block becomes oedema
    platform.stack.processes["worker"].stop()
    try:
        created = post_edit(platform, edit.uid, edit.headers, base_version=2, source_series_instance_uid=edit.t1c_uid,
                            geometry=edit.geometry, labels=base64.b64encode(encode_labels(after)).decode())
        assert created.status_code == 202, created.text
        assert created.json()["version"] == 3
        pending = platform.client.get(f"/api/studies/{edit.uid}/segmentation/versions", headers=edit.headers).json()[-1]
        assert (pending["version"], pending["state"], pending["seg_series_instance_uid"]) == (3, "queued", None)
        # meanwhile the results are those of version 2, and a further edit must start from version 3
        assert platform.client.get(f"/api/studies/{edit.uid}/measurements", headers=edit.headers).json() == edit.job["measurements"]
        assert post_edit(platform, edit.uid, edit.headers, base_version=2, source_series_instance_uid=edit.t1c_uid,
                         geometry=edit.geometry, labels="AAAA").status_code == 409
        # a radiologist cannot sign while version 3 is being saved: the report still describes version 2
        signer = bearer(platform, *RADIOLOGIST[:2])
        refused = platform.client.post(f"/api/studies/{edit.uid}/report/sign", headers=signer, json={})
        assert refused.status_code == 409 and "being saved" in refused.text
        with Connection(platform.env["GLIOSCOPE_BROKER_URL"]) as broker:
            lost = broker.default_channel.queue_purge(platform.stack.worker_queue)
        assert lost == 1
    finally:
        platform.stack.restart_worker()
    started = time.monotonic()
    job = wait_for_job(platform.client, created.json()["job_id"], timeout_s=180)
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    assert time.monotonic() - started >= 5  # it waited for the watcher, not for the lost message
    versions = platform.client.get(f"/api/studies/{edit.uid}/segmentation/versions", headers=edit.headers).json()
    assert [(v["version"], v["state"]) for v in versions] == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]
    assert versions[2]["voxel_counts"] == counts(after)
    seg = pydicom.dcmread(io.BytesIO(platform.client.get(f"/api/studies/{edit.uid}/segmentation", headers=edit.headers).content))
    assert str(seg.SeriesDescription) == "Glioscope tumour segmentation v3 (edited)"
    np.testing.assert_array_equal(read_segmentation(seg, edit.sources), after)
    # the report followed version 3, and now it can be signed
    report = platform.client.get(f"/api/studies/{edit.uid}/report", headers=edit.headers).json()
    assert report["segmentation"]["version"] == 3 and report["review_sections"] == []
    signed = platform.client.post(f"/api/studies/{edit.uid}/report/sign", headers=bearer(platform, *RADIOLOGIST[:2]), json={})
    assert signed.status_code == 200, signed.text
