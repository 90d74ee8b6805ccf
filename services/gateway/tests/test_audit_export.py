"""The audit log (every access recorded, append-only, searchable, CSV, no PHI), secrets kept out of the
logs, and the de-identified export."""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from pathlib import Path

import pydicom
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from glioscope_common.db import session_scope
from glioscope_common.records.access import AppendOnlyViolation, AuditEvent

from .conftest import ADMIN_PASSWORD, ADMIN_USERNAME, SERVICE_KEY, as_files, bearer, sign_in, small_study

pytestmark = pytest.mark.services


def audit_rows(gateway: TestClient) -> list[dict]:
    engine = sa.create_engine(gateway.app.state.container.settings.database_url)  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.text("select * from audit_events order by id"))]
    engine.dispose()
    return rows


def test_every_access_is_audited_without_phi_or_secrets(gateway: TestClient, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    files = small_study(tmp_path, seed=31)
    source = pydicom.dcmread(files[0])
    phi = [str(source.PatientName), str(source.PatientID), "Small", "SMALL31"]
    if source.get("PatientBirthDate"):
        phi.append(str(source.PatientBirthDate))
    body = gateway.post("/api/studies", files=as_files(files)).json()
    uid = body["study"]["study_instance_uid"]
    tokens = sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)
    admin = bearer(tokens["access_token"])
    gateway.post("/api/auth/token", data={"username": ADMIN_USERNAME, "password": "wrong-password"})
    gateway.get("/api/studies", headers=admin)
    gateway.get(f"/api/studies/{uid}", headers=admin)
    gateway.get(f"/api/studies/{uid}/measurements", headers=admin)  # 404: no finished job
    gateway.get(f"/api/jobs/{body['job']['id']}", headers=admin)
    gateway.get(f"/dicom-web/studies/{uid}/series", headers=admin)
    gateway.get(f"/dicom-web/studies/{uid}/series", headers=admin)  # deduplicated
    gateway.get(f"/api/studies/{uid}", headers={"authorization": "Bearer nonsense", "x-api-key": ""})
    gateway.get("/api/studies", params={"search": "Small^Study"}, headers=admin)

    rows = audit_rows(gateway)
    seen = [(r["actor"], r["action"], r["study_instance_uid"], r["outcome"]) for r in rows]
    assert ("key:" in seen[0][0], seen[0][1:]) == (True, ("uploaded", uid, "ok"))
    assert (ADMIN_USERNAME, "signed_in", None, "ok") in seen
    assert (ADMIN_USERNAME, "failed_sign_in", None, "denied") in seen
    assert (ADMIN_USERNAME, "viewed", uid, "ok") in seen
    assert (ADMIN_USERNAME, "viewed", uid, "not_found") in seen
    assert ("anonymous", "viewed", uid, "denied") in seen
    assert sum(1 for s in seen if s == (ADMIN_USERNAME, "viewed", uid, "ok")) == 2  # the study; the job and DICOMweb (deduplicated: one per caller, study and 5 minutes)
    assert all(r["request_id"] and r["client_ip"] for r in rows)
    text = " ".join(str(v) for r in rows for v in r.values())
    logs = caplog.text + "\n".join(str(r.__dict__) for r in caplog.records)
    for value in phi:
        assert value not in text
        assert value not in logs
    for secret in (ADMIN_PASSWORD, tokens["access_token"], tokens["refresh_token"], SERVICE_KEY, "wrong-password"):
        assert secret not in logs
        assert secret not in text

    # The admin API: filters and CSV.
    mine = gateway.get("/api/admin/audit", params={"actor": ADMIN_USERNAME, "action": "viewed", "study": uid},
                       headers=admin).json()
    assert {e["outcome"] for e in mine} == {"ok", "not_found"}
    assert gateway.get("/api/admin/audit", params={"since": "2100-01-01T00:00:00Z"}, headers=admin).json() == []
    assert len(gateway.get("/api/admin/audit", params={"until": "2100-01-01T00:00:00Z"}, headers=admin).json()) >= len(rows)
    exported = gateway.get("/api/admin/audit/export", params={"study": uid}, headers=admin)
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert table and all(r["study_instance_uid"] == uid for r in table)
    assert set(table[0]) == {"id", "at", "actor", "role", "action", "study_instance_uid", "outcome", "request_id", "client_ip"}


def test_the_audit_log_is_append_only(gateway: TestClient) -> None:
    gateway.get("/api/studies")
    container = gateway.app.state.container  # type: ignore[attr-defined]
    with pytest.raises(AppendOnlyViolation):
        with session_scope(container.sessions) as session:
            event = session.scalars(sa.select(AuditEvent)).first()
            event.actor = "someone-else"
    with pytest.raises(AppendOnlyViolation):
        with session_scope(container.sessions) as session:
            session.delete(session.scalars(sa.select(AuditEvent)).first())
    engine = sa.create_engine(container.settings.database_url)
    for statement in ("update audit_events set actor = 'x'", "delete from audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as connection:
            connection.execute(sa.text(statement))
    engine.dispose()
    assert audit_rows(gateway)[0]["actor"].startswith("key:")


def test_deidentified_export(gateway: TestClient, tmp_path: Path) -> None:
    files = small_study(tmp_path, seed=32)
    source = pydicom.dcmread(files[0])
    uid = gateway.post("/api/studies", files=as_files(files)).json()["study"]["study_instance_uid"]
    orthanc_studies_before = len(gateway.app.state.container.orthanc._request("GET", "/studies").json())  # type: ignore[attr-defined]
    admin = bearer(sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)["access_token"])
    response = gateway.post(f"/api/studies/{uid}/export", headers=admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        assert len(names) == len(files)
        datasets = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in names]
    source_uids = {str(source.StudyInstanceUID), str(source.SeriesInstanceUID), str(source.SOPInstanceUID),
                   str(source.FrameOfReferenceUID)}
    for ds in datasets:
        assert str(ds.PatientName) != str(source.PatientName)
        assert str(ds.PatientID) != str(source.PatientID)
        assert not ds.get("PatientBirthDate")
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod
        assert str(ds.StudyInstanceUID) != str(source.StudyInstanceUID)
        assert not {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                    str(ds.get("FrameOfReferenceUID", ""))} & source_uids
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            if source.get(keyword):
                assert ds.get(keyword, "") != source.get(keyword), keyword
        assert not ds.get("AccessionNumber")
    assert len({str(ds.StudyInstanceUID) for ds in datasets}) == 1
    # The de-identified copy is gone from the PACS; the export is audited.
    assert len(gateway.app.state.container.orthanc._request("GET", "/studies").json()) == orthanc_studies_before  # type: ignore[attr-defined]
    assert ("exported", uid, "ok") in [(r["action"], r["study_instance_uid"], r["outcome"]) for r in audit_rows(gateway)]
    # Researchers may export; clinicians may not.
    for role, expected in (("researcher", 200), ("clinician", 403)):
        gateway.post("/api/admin/users", json={"username": role, "password": "a-long-enough-password-42", "role": role,
                                               "projects": ["default"]}, headers=admin)
        user = bearer(sign_in(gateway, role, "a-long-enough-password-42")["access_token"])
        assert gateway.post(f"/api/studies/{uid}/export", headers=user).status_code == expected
