"""Issue 21, items 2 and 5, in a real browser against the real platform (like test_viewer.py: the e2e build,
the embedded platform, playwright-core + Debian's chromium; skips without them, fails with CI=true).

- frontend/e2e/frame-retry.spec.mjs: `page.route` answers 503 for one T1c frame (the middle instance) the
  first two times — the viewer retries with backoff, the image loads, no page error — and always — after
  four tries the viewer names the missing slice (T1c, its series and instance number), no page error.
- frontend/e2e/worklist.spec.mjs: three more studies of known names, IDs, dates and statuses are written to
  the records (a study needs no images to be listed); the worklist shows "Family, Given", ISO dates and
  the patient ID, sorts by the Patient, Patient ID and Date headers (aria-sort, arrow), and its status filter
  offers exactly the statuses of worklistModel.ts, each badge's status among them.
Screenshots land in test-artifacts/frontend/."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from glioscope_common.db import make_engine, make_session_factory, session_scope
from glioscope_common.records.models import Study, StudyStatus

from .conftest import e2e
from .test_viewer import ARTIFACTS, CHROMIUM, FRONTEND, frontend_dist, platform  # noqa: F401 (fixtures: a platform of its own)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USER = ("dr-frames-worklist", "dr-frames-worklist-password-1")


def _radiologist(platform: e2e.Platform, project: str) -> None:
    client = platform.client
    signed_in = client.post("/api/auth/token", data=dict(zip(("username", "password"), e2e.E2E_ADMIN)), headers={"x-api-key": ""})
    as_admin = {"authorization": f"Bearer {signed_in.json()['access_token']}", "x-api-key": ""}
    user = {"username": USER[0], "password": USER[1], "role": "radiologist", "projects": [project]}
    assert client.post("/api/admin/users", headers=as_admin, json=user).status_code in (201, 409)


def _spec(platform: e2e.Platform, spec: str, marker: str, **env: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["node", f"e2e/{spec}"], cwd=FRONTEND, capture_output=True, text=True, timeout=300,
        env={**os.environ, "GLIOSCOPE_URL": platform.stack.gateway_url, "GLIOSCOPE_USERNAME": USER[0],
             "GLIOSCOPE_PASSWORD": USER[1], "GLIOSCOPE_ARTIFACTS": str(ARTIFACTS), "CHROMIUM_PATH": CHROMIUM, **env},
    )
    print(run.stdout)
    assert run.returncode == 0 and marker in run.stdout, f"{run.stdout}\n{run.stderr}\n{platform.stack.logs()}"
    return run.stdout


def test_a_failing_frame_is_retried_and_then_named(platform: e2e.Platform, e2e_case: e2e.E2ECase) -> None:
    client = platform.client
    e2e.segment(platform, e2e_case.files)
    uid = e2e_case.study_instance_uid
    study = client.get(f"/api/studies/{uid}").json()
    _radiologist(platform, study["project"])
    t1c = next(s for s in study["series"] if s["role"] == "T1c")
    metadata = client.get(f"/dicom-web/studies/{uid}/series/{t1c['series_instance_uid']}/metadata",
                          headers={"accept": "application/dicom+json"})
    assert metadata.status_code == 200, metadata.text
    instances = sorted(((int(m["00200013"]["Value"][0]), m["00080018"]["Value"][0]) for m in metadata.json()))
    number, sop = instances[len(instances) // 2]
    out = _spec(platform, "frame-retry.spec.mjs", "FRAME RETRY OK", GLIOSCOPE_STUDY_UID=uid, GLIOSCOPE_FRAME_SOP=sop,
                GLIOSCOPE_FRAME_INSTANCE=str(number), GLIOSCOPE_FRAME_SERIES_NUMBER=str(t1c["series_number"] or ""))
    assert "RECOVERED hits=3" in out and "MISSING hits=4" in out


def _worklist_statuses() -> list[str]:
    source = (FRONTEND / "src" / "features" / "worklist" / "worklistModel.ts").read_text()
    block = re.search(r"export const WORKLIST_STATUSES = \[(.*?)\] as const", source, re.S)
    assert block
    return re.findall(r"id: '([a-z_]+)'", block.group(1))


def test_the_worklist_formats_sorts_and_filters(platform: e2e.Platform, e2e_case: e2e.E2ECase) -> None:
    client = platform.client
    e2e.segment(platform, e2e_case.files)
    uid = e2e_case.study_instance_uid
    study = client.get(f"/api/studies/{uid}").json()
    project = study["project"]
    _radiologist(platform, project)
    not_processed = getattr(StudyStatus, "not_processed", StudyStatus.incomplete)
    extra = [  # (uid, PN, patient ID, DA, status, missing)
        ("1.2.826.0.1.3680043.10.1441.21.1", "Zeta^Anna", "P-0002", "20251203", not_processed, []),
        ("1.2.826.0.1.3680043.10.1441.21.2", "Alpha^Bert^J", "P-0010", "20240101", StudyStatus.incomplete, ["T2"]),
        ("1.2.826.0.1.3680043.10.1441.21.3", "Mu", "P-0001", "20261203", StudyStatus.received, []),
    ]
    engine = make_engine(platform.env["GLIOSCOPE_DATABASE_URL"])
    try:
        with session_scope(make_session_factory(engine)) as session:
            for study_uid, name, pid, date, status, missing in extra:
                if session.query(Study).filter_by(study_instance_uid=study_uid).first() is None:
                    session.add(Study(study_instance_uid=study_uid, patient_name=name, patient_id=pid, study_date=date,
                                      study_description="worklist check", project=project, status=status,
                                      missing_sequences=missing, sequence_overrides={}))
    finally:
        engine.dispose()

    def iso(da: str) -> str:
        return f"{da[:4]}-{da[4:6]}-{da[6:]}" if re.fullmatch(r"\d{8}", da) else da

    def person(pn: str) -> str:
        family, _, given = pn.partition("^")
        return f"{family}, {' '.join(p for p in given.split('^') if p)}" if given.strip("^") else family

    expect = {u: {"name": person(n), "id": p, "date": iso(d)} for u, n, p, d, _, _ in extra}
    expect[uid] = {"name": person(study["patient_name"]) or "—", "id": study["patient_id"] or "—", "date": iso(study["study_date"]) or "—"}
    assert expect["1.2.826.0.1.3680043.10.1441.21.2"] == {"name": "Alpha, Bert J", "id": "P-0010", "date": "2024-01-01"}
    statuses = _worklist_statuses()
    assert "segmented" in statuses and "not_processed" in statuses and len(statuses) == len(set(statuses))
    _spec(platform, "worklist.spec.mjs", "WORKLIST OK", GLIOSCOPE_EXPECT=json.dumps(expect), GLIOSCOPE_STATUSES=json.dumps(statuses))
