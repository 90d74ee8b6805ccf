"""Result routing and processing rules on the whole platform (issue 19, items 3 and 4), against a second real
Orthanc acting as the hospital PACS ("HOSPITAL-PACS": its own HTTP and DICOM ports and AE title).

- A study uploaded through the gateway is segmented; its SEG reaches the PACS by C-STORE on completion.
- The PACS goes down; the report is signed: the signed SR and PDF (STOW-RS, `on: signed`) fail and are listed
  as failed deliveries for an admin; the PACS comes back, the retry delivers them, and the PACS holds exactly one
  copy of each result (counted there), also after an admin's resend.
- Processing rules (only MR studies described as brain): a study sent straight to our Orthanc that no rule
  matches is stored and listed as not_processed with the reason, and gets no job; one that matches gets a job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dev.testing import require_executable
from glioscope_common.volume import Volume

from .conftest import E2E_ADMIN, E2ECase, Platform, platform_env, segment, start_platform

PACS_AET = "HOSPITAL-PACS"
OUR_AET = "GLIOSCOPE"
RULES = [{"name": "brain-mr", "modality": "MR", "study_description": "brain"}]


@pytest.fixture(scope="module")
def hospital_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOrthanc]:
    require_executable("storescu", "dcmtk")
    pacs = LocalOrthanc(tmp_path_factory.mktemp("hospital-pacs"), aet=PACS_AET, stable_age=1,
                        modalities={"glioscope": {"AET": OUR_AET, "Host": "127.0.0.1", "Port": 104}})
    pacs.start()
    try:
        yield pacs
    finally:
        pacs.stop()


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             hospital_pacs: LocalOrthanc) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("platform-routing")
    orthanc = LocalOrthanc(tmp / "orthanc", stable_age=2)
    destinations = [
        {"name": "pacs-seg", "protocol": "dimse", "aet": PACS_AET, "host": "127.0.0.1", "port": hospital_pacs.dicom_port,
         "calling_aet": OUR_AET, "on": "completed", "what": ["seg"], "timeout_s": 5},
        {"name": "pacs-reports", "protocol": "dicomweb", "url": hospital_pacs.dicomweb_url,
         "username": hospital_pacs.auth[0], "password": hospital_pacs.auth[1], "on": "signed", "what": ["sr", "pdf"],
         "timeout_s": 5},
    ]
    env = {
        **platform_env("embedded", tmp, request),
        "GLIOSCOPE_DESTINATIONS": json.dumps(destinations),
        "GLIOSCOPE_PROCESSING_RULES": json.dumps(RULES),
        "GLIOSCOPE_ROUTING_INTERVAL_S": "1",
        "GLIOSCOPE_ROUTING_RETRY_BASE_S": "1",
        "GLIOSCOPE_ROUTING_RETRY_MAX_S": "2",
    }
    orthanc.start()
    try:
        yield from start_platform(tmp, env, orthanc)
    finally:
        orthanc.stop()


def wait_until(check: Callable[[], object], timeout_s: float = 60, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not reached in {timeout_s} s: {what}")


def pacs_holds(pacs: LocalOrthanc, sop_instance_uid: str) -> int:
    """How many instances with this SOP Instance UID the PACS holds (0 while it is down)."""
    try:
        with pacs.client(timeout=5) as client:
            found = client.post("/tools/lookup", content=sop_instance_uid.encode()).json()
    except httpx.TransportError:
        return 0
    return sum(1 for item in found if item.get("Type") == "Instance")


def pacs_count(pacs: LocalOrthanc) -> int:
    with pacs.client(timeout=5) as client:
        return int(client.get("/statistics").json()["CountInstances"])


def bearer(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/token", data={"username": username, "password": password}, headers={"x-api-key": ""})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}", "x-api-key": ""}


def deliveries(platform: Platform, admin: dict[str, str], **params: str) -> list[dict]:
    response = platform.client.get("/api/admin/deliveries", params=params, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def test_results_reach_the_hospital_pacs_once_even_after_it_was_down(
    platform: Platform, hospital_pacs: LocalOrthanc, e2e_case: E2ECase
) -> None:
    client = platform.client
    uid = e2e_case.study_instance_uid
    admin = bearer(client, *E2E_ADMIN)
    assert client.get("/api/admin/deliveries").status_code == 403  # the service key is no admin

    # Uploaded through the gateway: always segmented (rules concern studies sent straight to the PACS).
    job = segment(platform, e2e_case.files)
    seg_uid = job["seg_sop_instance_uid"]
    wait_until(lambda: pacs_holds(hospital_pacs, seg_uid) == 1, what="the SEG in the hospital PACS")
    [seg_delivery] = deliveries(platform, admin, study=uid)
    assert seg_delivery["destination"] == "pacs-seg" and seg_delivery["state"] == "sent"
    assert pacs_count(hospital_pacs) == 1  # only the SEG: the report is not signed yet, the sources stay home

    # The PACS goes down; a radiologist signs: the signed SR and PDF cannot be delivered and are listed.
    project = client.get(f"/api/studies/{uid}").json()["project"]
    created = client.post("/api/admin/users", headers=admin, json={
        "username": "dr-route", "password": "dr-route-password-1", "role": "radiologist", "projects": [project]})
    assert created.status_code in (201, 409), created.text
    radiologist = bearer(client, "dr-route", "dr-route-password-1")
    hospital_pacs.stop()
    edited = client.put(f"/api/studies/{uid}/report/sections/impression", headers=radiologist,
                        json={"text": "Right-sided tumour, see findings. Reviewed."})
    assert edited.status_code == 200, edited.text
    signed = client.post(f"/api/studies/{uid}/report/sign", headers=radiologist, json={})
    assert signed.status_code == 200, signed.text
    export = signed.json()["export"]
    reports = {export["sr_sop_instance_uid"], export["pdf_sop_instance_uid"]}
    failed = wait_until(lambda: [d for d in deliveries(platform, admin, state="failed") if d["sop_instance_uid"] in reports],
                        what="a failed delivery listed")
    assert all(d["destination"] == "pacs-reports" and d["last_error"] and d["attempts"] >= 1 for d in failed)

    # Back (same ports, same storage): the retries deliver; exactly one copy of each result.
    hospital_pacs.start()
    wait_until(lambda: all(pacs_holds(hospital_pacs, sop) == 1 for sop in reports), what="SR and PDF delivered")
    wait_until(lambda: {d["state"] for d in deliveries(platform, admin, study=uid)} == {"sent"}, what="all sent")
    assert pacs_count(hospital_pacs) == 3
    assert sorted(d["kind"] for d in deliveries(platform, admin, study=uid)) == ["pdf", "seg", "sr"]

    # An admin's resend of a sent delivery changes nothing (audited); still one copy each.
    resent = client.post(f"/api/admin/deliveries/{seg_delivery['id']}/resend", headers=admin)
    assert resent.status_code == 200 and resent.json()["state"] == "sent", resent.text
    time.sleep(2.5)
    assert pacs_count(hospital_pacs) == 3 and pacs_holds(hospital_pacs, seg_uid) == 1
    audit = client.get("/api/admin/audit", params={"study": uid, "action": "administered"}, headers=admin).json()
    assert any(event["outcome"] == "ok" for event in audit)


def direct_study(folder: Path, description: str, seed: int) -> tuple[str, list[Path]]:
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    images = {role: Volume(rng.uniform(0, 500, (24, 20, 12)).astype(np.float32), affine)
              for role in ("T1", "T1c", "T2", "FLAIR")}
    study_uid, _ = write_study(images, folder, patient_id=f"RULES{seed}", patient_name="Rules^Test",
                               study_description=description, seed=seed)
    return study_uid, sorted(folder.rglob("*.dcm"))


def registered(platform: Platform, study_uid: str) -> dict:
    def check() -> dict | None:
        response = platform.client.get(f"/api/studies/{study_uid}")
        if response.status_code == 200 and response.json()["status"] not in ("received", "receiving"):
            return response.json()
        return None
    return wait_until(check, what="the watcher registered the study")  # type: ignore[return-value]


def test_processing_rules_decide_what_is_segmented(platform: Platform, tmp_path: Path) -> None:
    spine_uid, spine_files = direct_study(tmp_path / "spine", "MR SPINE", seed=71)
    brain_uid, brain_files = direct_study(tmp_path / "brain", "MR Brain tumour follow-up", seed=72)
    with platform.orthanc.dicomweb() as ours:  # straight to our Orthanc, not through the gateway
        ours.store_instances([f.read_bytes() for f in spine_files])
        ours.store_instances([f.read_bytes() for f in brain_files])

    spine = registered(platform, spine_uid)
    assert spine["status"] == "not_processed" and spine["latest_job"] is None
    assert "no processing rule matched" in spine["processing_note"] and "MR SPINE" in spine["processing_note"]
    listed = {s["study_instance_uid"]: s for s in platform.client.get("/api/studies", params={"limit": 200}).json()}
    assert listed[spine_uid]["status"] == "not_processed"  # stored and listed in the worklist
    time.sleep(3)  # later watcher cycles queue nothing either
    assert platform.client.get(f"/api/studies/{spine_uid}").json()["latest_job"] is None

    brain = registered(platform, brain_uid)
    assert brain["status"] == "ready" and brain["processing_note"] is None
    assert brain["latest_job"] is not None
