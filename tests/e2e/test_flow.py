"""A DICOM study goes in through the gateway; DICOM-SEG, NIfTI and a PDF report come out.

Run twice: with the production parts (Postgres, RabbitMQ, Redis, Triton) and with the embedded
defaults (SQLite, kombu's SQLAlchemy broker, onnxruntime in the worker). Orthanc is real in both.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import redis
from pypdf import PdfReader

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dev.orthanc import LOCAL_SCU_AET, LocalOrthanc
from glioscope_common.dev.testing import require_service
from glioscope_common.volume import Volume

from .conftest import E2ECase, Platform, dice, platform_env, seg_frame_points_ras, start_platform, upload, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.services]


def dciodvfy_findings(path: Path) -> list[str]:
    """dciodvfy's Error and Warning lines (a failure in CI, a skip elsewhere, without dicom3tools)."""
    if shutil.which("dciodvfy") is None:
        require_service("dciodvfy", "install the Debian package dicom3tools")
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith(("Error", "Warning"))]


@pytest.fixture(scope="module", params=["services", "embedded"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp(f"platform-{request.param}")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    orthanc.start()
    try:
        yield from start_platform(tmp, platform_env(request.param, tmp, request), orthanc)
    finally:
        orthanc.stop()


@pytest.fixture(scope="module")
def segmented(platform: Platform, e2e_case: E2ECase) -> dict:
    response = upload(platform.client, e2e_case.files)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True
    assert body["study"]["status"] == "ready"
    roles = {s["role"] for s in body["study"]["series"]}
    assert roles == {"T1", "T1c", "T2", "FLAIR"}
    job = wait_for_job(platform.client, body["job"]["id"])
    assert job["state"] == "succeeded", f"{job['error']}\n{platform.stack.logs()}"
    return job


def test_job_records_stages_and_measurements(platform: Platform, segmented: dict, e2e_case: E2ECase) -> None:
    for stage in ("fetch", "resample", "normalise", "inference", "postprocess", "outputs"):
        assert segmented["timings_s"][stage] >= 0.0, stage
    measurements = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}/measurements").json()
    true_wt_ml = float((e2e_case.label > 0).sum()) * abs(np.linalg.det(e2e_case.t1c.affine[:3, :3])) / 1000
    wt = measurements["region_volumes_ml"]["WT"]
    assert measurements["tumour_detected"] is True
    assert 0.5 * true_wt_ml < wt < 1.6 * true_wt_ml, (wt, true_wt_ml)
    assert measurements["max_axial_diameter_mm"] >= measurements["perpendicular_diameter_mm"] > 0
    study = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}").json()
    assert study["latest_job"]["id"] == segmented["id"]


def test_segmentation_is_valid_dicom_seg_on_the_source_geometry(
    platform: Platform, segmented: dict, e2e_case: E2ECase, tmp_path: Path
) -> None:
    response = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}/segmentation")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom"
    seg_path = tmp_path / "seg.dcm"
    seg_path.write_bytes(response.content)
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(seg_path))
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.StudyInstanceUID == e2e_case.study_instance_uid
    t1c_series = {str(item.SeriesInstanceUID) for item in seg.ReferencedSeriesSequence}
    t1c_uid = segmented["sequence_series"]["T1c"]
    assert t1c_series == {t1c_uid}
    codes = {str(item.SegmentedPropertyTypeCodeSequence[0].CodeValue) for item in seg.SegmentSequence}
    assert codes, "no SNOMED-coded segments"
    assert all(item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT" for item in seg.SegmentSequence)

    assert dciodvfy_findings(seg_path) == []

    # The NIfTI mask: same grid and affine as the T1c source series, same voxels as the SEG.
    mask_response = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}/mask.nii.gz")
    assert mask_response.status_code == 200
    mask_image = nib.Nifti1Image.from_bytes(gzip.decompress(mask_response.content))
    mask = np.asarray(mask_image.dataobj)
    assert mask.shape == e2e_case.t1c.shape
    np.testing.assert_allclose(mask_image.affine, e2e_case.t1c.affine, atol=1e-3)
    assert set(np.unique(mask)) <= {0, 1, 2, 3}

    # Geometry: every labelled voxel sits at the same patient coordinates in the SEG and in the NIfTI.
    seg_points = seg_frame_points_ras(seg)
    nifti_points = Volume(mask.astype(np.float32), mask_image.affine).world_coordinates(np.argwhere(mask > 0))
    assert len(seg_points) == len(nifti_points) > 0
    order_seg = np.lexsort(np.round(seg_points, 2).T)
    order_nifti = np.lexsort(np.round(nifti_points, 2).T)
    np.testing.assert_allclose(seg_points[order_seg], nifti_points[order_nifti], atol=0.01)

    # And on the tumour: the prediction overlaps the generator's truth in the T1c's own voxels.
    whole_tumour_dice = dice(mask > 0, e2e_case.label > 0)
    assert whole_tumour_dice > 0.5, whole_tumour_dice


def test_report_pdf_quotes_the_measurements(platform: Platform, segmented: dict, e2e_case: E2ECase) -> None:
    response = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}/report.pdf")
    assert response.status_code == 200
    assert response.content[:5] == b"%PDF-"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    wt = segmented["measurements"]["region_volumes_ml"]["WT"]
    assert f"{wt:.1f}" in text
    assert "research use only" in text.lower()
    report = platform.client.get(f"/api/studies/{e2e_case.study_instance_uid}/report").json()
    for section in ("findings", "impression", "diagnosis", "recommendations"):
        assert report["sections"][section].strip(), section


def test_progress_is_observable(platform: Platform, segmented: dict) -> None:
    """Server-Sent Events from the gateway in both configurations; mirrored in Redis where configured."""
    with platform.client.stream("GET", f"/api/jobs/{segmented['id']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(lines[-1][6:])["state"] == "succeeded"
    if "GLIOSCOPE_REDIS_URL" in platform.env:
        client = redis.Redis.from_url(platform.env["GLIOSCOPE_REDIS_URL"])
        snapshot = json.loads(client.get(f"glioscope:job:{segmented['id']}:progress"))
        assert snapshot == {"job_id": segmented["id"], "stage": "done", "progress": 1.0}


def test_dicomweb_proxy_serves_the_viewer(platform: Platform, segmented: dict, e2e_case: E2ECase) -> None:
    response = platform.client.get(f"/dicom-web/studies/{e2e_case.study_instance_uid}/series")
    assert response.status_code == 200
    modalities = {item["00080060"]["Value"][0] for item in response.json()}
    assert modalities == {"MR", "SEG"}


def test_same_study_twice_is_idempotent(platform: Platform, segmented: dict, e2e_case: E2ECase) -> None:
    response = upload(platform.client, e2e_case.files[:20] + e2e_case.files)
    assert response.status_code == 200, response.text
    assert response.json()["created"] is False
    assert response.json()["job"]["id"] == segmented["id"]
    studies = platform.client.get("/api/studies").json()
    assert [s["study_instance_uid"] for s in studies].count(e2e_case.study_instance_uid) == 1


def send_directly(platform: Platform, files: list[Path]) -> None:
    """C-STORE with dcmtk's storescu (the services configuration) or STOW-RS to Orthanc (embedded)."""
    if "GLIOSCOPE_REDIS_URL" in platform.env:
        if shutil.which("storescu") is None:
            require_service("storescu", "install the Debian package dcmtk")
        sent = subprocess.run(
            # from the modality the embedded Orthanc knows (calling AET and address)
            ["storescu", "-aet", LOCAL_SCU_AET, "-aec", platform.orthanc.aet, "127.0.0.1", str(platform.orthanc.dicom_port),
             *map(str, files)],
            capture_output=True, text=True,
        )
        assert sent.returncode == 0, sent.stderr
    else:
        platform.orthanc.dicomweb().store_instances([f.read_bytes() for f in files])


def wait_for_registration(platform: Platform, study_uid: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = platform.client.get(f"/api/studies/{study_uid}")
        if response.status_code == 200 and response.json()["status"] != "received":
            return response.json()
        time.sleep(0.5)
    raise AssertionError("the watcher never registered the study")


def small_study(folder: Path, roles: tuple[str, ...], seed: int) -> tuple[str, list[Path]]:
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    images = {role: Volume(rng.uniform(0, 500, (24, 20, 12)).astype(np.float32), affine) for role in roles}
    study_uid, _ = write_study(images, folder, patient_id=f"DIRECT{seed}", patient_name="Direct^Send",
                               study_description="direct", seed=seed)
    return study_uid, sorted(folder.rglob("*.dcm"))


def test_a_study_sent_straight_to_orthanc_is_registered(platform: Platform, segmented: dict, tmp_path: Path) -> None:
    """Only T1 and T2 sent: registered, visible in the worklist, told what is missing, no job."""
    study_uid, files = small_study(tmp_path, ("T1", "T2"), seed=31)
    send_directly(platform, files)
    study = wait_for_registration(platform, study_uid)
    assert study["status"] == "incomplete"
    assert set(study["missing_sequences"]) == {"T1c", "FLAIR"}
    assert study["source"] in ("dicomweb", "dimse")
    assert study["latest_job"] is None


def test_a_complete_study_sent_straight_to_orthanc_gets_a_job(platform: Platform, segmented: dict, tmp_path: Path) -> None:
    study_uid, files = small_study(tmp_path, ("T1", "T1c", "T2", "FLAIR"), seed=32)
    send_directly(platform, files)
    study = wait_for_registration(platform, study_uid)
    assert study["status"] == "ready"
    assert study["latest_job"] is not None
    assert study["latest_job"]["sequence_series"].keys() == {"T1", "T1c", "T2", "FLAIR"}


def test_secrets_never_reach_the_logs(platform: Platform, segmented: dict, e2e_case: E2ECase) -> None:
    """A sign-in and authenticated calls with a known password and token; no service's log holds them."""
    from .conftest import E2E_ADMIN, E2E_API_KEY, E2E_JWT_SECRET

    client = platform.client
    tokens = client.post("/api/auth/token", data={"username": E2E_ADMIN[0], "password": E2E_ADMIN[1]},
                         headers={"x-api-key": ""}).json()
    headers = {"authorization": f"Bearer {tokens['access_token']}", "x-api-key": ""}
    assert client.get(f"/api/studies/{e2e_case.study_instance_uid}", headers=headers).status_code == 200
    assert client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 200
    client.post("/api/auth/token", data={"username": E2E_ADMIN[0], "password": "wrong-" + E2E_ADMIN[1]},
                headers={"x-api-key": ""})
    logs = "".join(p.read_text(errors="replace") for p in (Path(platform.env["GLIOSCOPE_DATA_DIR"]) / "logs").glob("*.log"))
    assert logs  # the services' log files were found
    logs += platform.orthanc.log_path.read_text(errors="replace")
    # Every setting whose name says it is secret (…SECRET…, …KEY…, …PASSWORD…, …TOKEN…), not only a fixed list:
    # a new secret setting is covered as soon as the platform is given one.
    named = {name: value for name, value in platform.env.items()
             if re.search(r"SECRET|KEY|PASSWORD|TOKEN", name) and len(value) >= 8 and not value.replace(".", "").isdigit()}
    assert {"GLIOSCOPE_JWT_SECRET", "GLIOSCOPE_BOOTSTRAP_API_KEY", "GLIOSCOPE_SERVICE_TOKEN",
            "GLIOSCOPE_ORTHANC_PASSWORD", "GLIOSCOPE_BOOTSTRAP_ADMIN_PASSWORD"} <= named.keys(), sorted(named)
    secrets = {"admin password": E2E_ADMIN[1], "access token": tokens["access_token"],
               "refresh token": tokens["refresh_token"], "API key": E2E_API_KEY, "JWT secret": E2E_JWT_SECRET, **named}
    leaked = [name for name, secret in secrets.items() if secret in logs]
    assert not leaked, f"in the logs: {leaked}"


def test_report_edit_sign_and_store_through_the_gateway(
    platform: Platform, segmented: dict, e2e_case: E2ECase, tmp_path: Path
) -> None:
    """A radiologist edits a section, signs, and the signed report's PDF and SR reach the PACS, the SR citing
    the SEG and source series that are there."""
    from .conftest import E2E_ADMIN

    client = platform.client
    uid = e2e_case.study_instance_uid
    project = client.get(f"/api/studies/{uid}").json()["project"]

    def bearer(username: str, password: str) -> dict[str, str]:
        response = client.post("/api/auth/token", data={"username": username, "password": password},
                               headers={"x-api-key": ""})
        assert response.status_code == 200, response.text
        return {"authorization": f"Bearer {response.json()['access_token']}", "x-api-key": ""}

    admin = bearer(*E2E_ADMIN)
    for username, role in (("dr-reader", "radiologist"), ("dr-clinic", "clinician")):
        created = client.post("/api/admin/users", headers=admin,
                              json={"username": username, "password": f"{username}-password-1", "role": role, "projects": [project]})
        assert created.status_code in (201, 409), created.text
    radiologist = bearer("dr-reader", "dr-reader-password-1")
    clinician = bearer("dr-clinic", "dr-clinic-password-1")

    edited = client.put(f"/api/studies/{uid}/report/sections/impression", headers=radiologist,
                        json={"text": "Right-sided tumour, see findings. Reviewed."})
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    diff = client.get(f"/api/studies/{uid}/report/diff", params={"from": 1, "to": 2}, headers=radiologist).json()
    assert any(s["section"] == "impression" and s["changed"] for s in diff["sections"])
    assert client.post(f"/api/studies/{uid}/report/sign", headers=clinician, json={}).status_code == 403
    signed = client.post(f"/api/studies/{uid}/report/sign", headers=radiologist, json={})
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "final"
    locked = client.put(f"/api/studies/{uid}/report/sections/impression", headers=radiologist, json={"text": "late change"})
    assert locked.status_code == 409
    modalities = {item["00080060"]["Value"][0] for item in client.get(f"/dicom-web/studies/{uid}/series").json()}
    assert {"MR", "SEG", "DOC", "SR"} <= modalities

    # The stored SR cites the job's SEG and the four series the model read, all of which are in the PACS, and
    # each label's volume points at a segment of that SEG; SR and PDF pass dciodvfy without a warning.
    export = signed.json()["export"]
    assert export["error"] is None and export["stored_at"], export
    with platform.orthanc.dicomweb() as pacs:
        sr = pacs.retrieve_instance(uid, export["sr_series_instance_uid"], export["sr_sop_instance_uid"])
        pdf = pacs.retrieve_instance(uid, export["pdf_series_instance_uid"], export["pdf_sop_instance_uid"])
        (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
        assert evidence.StudyInstanceUID == uid
        cited = {str(s.SeriesInstanceUID): {str(i.ReferencedSOPInstanceUID) for i in s.ReferencedSOPSequence}
                 for s in evidence.ReferencedSeriesSequence}
        assert set(cited) == set(segmented["sequence_series"].values()) | {segmented["seg_series_instance_uid"]}
        for series_uid, instances in cited.items():
            stored = {str(i["00080018"]["Value"][0]) for i in pacs.search_instances(uid, series_uid)}
            assert instances == stored, series_uid
        seg = pacs.retrieve_instance(uid, segmented["seg_series_instance_uid"], segmented["seg_sop_instance_uid"])
        groups = hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_volumetric_roi_measurement_groups()
        assert len(groups) == len(seg.SegmentSequence)
        for group in groups:
            segment_item, series_item = group.referenced_segment
            assert segment_item.referenced_sop_instance_uid == segmented["seg_sop_instance_uid"]
            assert series_item.value == segmented["sequence_series"]["T1c"]
            (number,) = segment_item.referenced_segment_numbers
            label = group.tracking_identifier.split()[1]  # "Label <value> <name>"
            assert seg.SegmentSequence[number - 1].TrackingID == f"glioscope-label-{label}"
        for name, ds in (("sr", sr), ("pdf", pdf)):
            path = tmp_path / f"{name}.dcm"
            ds.save_as(path, enforce_file_format=True)
            assert dciodvfy_findings(path) == [], name
            for keyword in ("PatientName", "PatientID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber"):
                assert str(ds.get(keyword, "")) == str(seg.get(keyword, "")), (name, keyword)
