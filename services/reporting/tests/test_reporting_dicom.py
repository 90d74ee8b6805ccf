"""The report as DICOM: Encapsulated PDF and TID 1500 SR, checked with dciodvfy and highdicom, stored in a real
Orthanc on signing, on addenda and on POST /export (idempotent per version)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dicomweb import HttpDicomWeb
from glioscope_common.measurements import Measurements
from glioscope_reporting.main import create_app
from glioscope_reporting.reports import dicom_export
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Study
from glioscope_reporting.settings import Settings

from .conftest import TOKEN, as_user, records_db, worker_auth


def dciodvfy_errors(data: bytes, tmp_path: Path, name: str) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(data)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def _volumes(sr: pydicom.Dataset) -> dict[str, float]:
    """Tracking identifier -> volume (mL) from a TID 1500 report."""
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    out = {}
    for group in report.content.get_image_measurement_groups():
        (measurement,) = group.get_measurements()
        assert measurement.unit.value == "ml" and measurement.unit.scheme_designator == "UCUM"
        out[group.tracking_identifier] = float(measurement.value)
    return out


@pytest.fixture
def objects(payload_factory) -> tuple[bytes, bytes, dict]:  # type: ignore[no-untyped-def]
    payload = payload_factory()
    common = dict(report_id="r-1", version=3, study_instance_uid=payload["study_instance_uid"],
                  patient=Patient(**payload["patient"]), study=Study(**payload["study"]))
    pdf = dicom_export.encapsulated_pdf(b"%PDF-1.4\n% minimal\n", **common)  # type: ignore[arg-type]
    sr = dicom_export.measurement_report(
        Measurements.model_validate(payload["measurements"]), model=ModelInfo(**payload["model"]),
        final=True, verifying_observer="Smith^Anna", **common,  # type: ignore[arg-type]
    )
    return pdf, sr, payload


def test_dicom_objects_pass_dciodvfy(objects, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pdf, sr, payload = objects
    assert dciodvfy_errors(pdf, tmp_path, "pdf") == []
    assert dciodvfy_errors(sr, tmp_path, "sr") == []

    ds = pydicom.dcmread(io.BytesIO(pdf))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and ds.Modality == "DOC"
    assert ds.StudyInstanceUID == payload["study_instance_uid"]
    assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == ("Doe^Jane", "GLIO-0001", "19700101", "F")
    assert ds.EncapsulatedDocument.startswith(b"%PDF") and ds.MIMETypeOfEncapsulatedDocument == "application/pdf"

    srds = pydicom.dcmread(io.BytesIO(sr))
    assert srds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34" and srds.Modality == "SR"
    assert srds.StudyInstanceUID == payload["study_instance_uid"] and srds.PatientID == "GLIO-0001"
    assert srds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert srds.CompletionFlag == "COMPLETE" and srds.VerificationFlag == "VERIFIED"
    volumes = _volumes(srds)
    assert volumes == {
        "Label 1 necrotic core": pytest.approx(8.14), "Label 2 peritumoural oedema": pytest.approx(25.27),
        "Label 3 enhancing tumour": pytest.approx(12.03), "WT whole tumour": pytest.approx(45.44),
        "TC tumour core": pytest.approx(20.17), "ET enhancing tumour": pytest.approx(12.03),
    }


def test_uids_are_deterministic_per_report_and_version() -> None:
    a, b = dicom_export.uids_for("r-1", 1), dicom_export.uids_for("r-1", 1)
    assert a == b
    c = dicom_export.uids_for("r-1", 2)
    assert c.pdf_sop_instance_uid != a.pdf_sop_instance_uid and c.pdf_series_instance_uid == a.pdf_series_instance_uid
    assert dicom_export.uids_for("r-2", 1).pdf_series_instance_uid != a.pdf_series_instance_uid
    for uid in (a.pdf_sop_instance_uid, a.sr_sop_instance_uid, a.pdf_series_instance_uid):
        assert uid.startswith("2.25.") and len(uid) <= 64


@pytest.fixture
def pacs_client(orthanc, tmp_path: Path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = Settings(environment="test", database_url=records_db(tmp_path / 'pacs.db'), service_token=TOKEN,
                        **orthanc.settings_values, store_on_sign=True)
    with TestClient(create_app(settings)) as client:
        yield client


def _instances(dicomweb: HttpDicomWeb, study_uid: str, series_uid: str) -> list[str]:
    return sorted(str(i["00080018"]["Value"][0]) for i in dicomweb.search_instances(study_uid, series_uid))


def test_sign_stores_pdf_and_sr_in_orthanc(orthanc, pacs_client: TestClient, payload_factory, key_images, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    auth = worker_auth()
    radiologist = as_user("dr.smith", "radiologist")
    payload = payload_factory(study_instance_uid="1.2.826.0.1.3680043.8.498.777", job_id="job-pacs")
    created = pacs_client.post("/api/reports", data={"payload": json.dumps(payload)}, files=key_images, headers=auth)
    assert created.status_code == 201, created.text
    rid, study_uid = created.json()["id"], payload["study_instance_uid"]

    signed = pacs_client.post(f"/api/reports/{rid}/sign", json={"name": "Dr Anna Smith"}, headers=radiologist)
    assert signed.status_code == 200, signed.text
    export = signed.json()["export"]
    assert export["error"] is None and export["stored_at"] and export["version"] == 2
    uids = dicom_export.uids_for(rid, 2)
    assert export["pdf_sop_instance_uid"] == uids.pdf_sop_instance_uid

    with orthanc.dicomweb() as dicomweb:
        series = {str(s["0020000E"]["Value"][0]): str(s["00080060"]["Value"][0]) for s in dicomweb.search_series(study_uid)}
        assert series == {uids.pdf_series_instance_uid: "DOC", uids.sr_series_instance_uid: "SR"}
        pdf_ds = dicomweb.retrieve_instance(study_uid, uids.pdf_series_instance_uid, uids.pdf_sop_instance_uid)
        sr_ds = dicomweb.retrieve_instance(study_uid, uids.sr_series_instance_uid, uids.sr_sop_instance_uid)
        for name, ds in (("pdf", pdf_ds), ("sr", sr_ds)):
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
            assert dciodvfy_errors(buffer.getvalue(), tmp_path, f"orthanc-{name}") == [], name
        assert pdf_ds.EncapsulatedDocument.startswith(b"%PDF") and str(pdf_ds.PatientName) == "Doe^Jane"
        assert _volumes(sr_ds)["WT whole tumour"] == pytest.approx(45.44)
        assert sr_ds.VerifyingObserverSequence[0].VerifyingObserverName == "Dr Anna Smith (dr.smith)^"

        # A retry (POST /export) of the same version overwrites: still one instance per series.
        again = pacs_client.post(f"/api/reports/{rid}/export", headers=auth)
        assert again.status_code == 200 and again.json()["export"]["pdf_sop_instance_uid"] == uids.pdf_sop_instance_uid
        assert _instances(dicomweb, study_uid, uids.pdf_series_instance_uid) == [uids.pdf_sop_instance_uid]
        assert _instances(dicomweb, study_uid, uids.sr_series_instance_uid) == [uids.sr_sop_instance_uid]

        # An addendum is a new version: a new instance in the same series.
        addendum = pacs_client.post(f"/api/reports/{rid}/addenda", json={"text": "Perfusion imaging advised."}, headers=radiologist)
        assert addendum.status_code == 201 and addendum.json()["export"]["version"] == 3
        v3 = dicom_export.uids_for(rid, 3)
        assert _instances(dicomweb, study_uid, uids.pdf_series_instance_uid) == sorted([uids.pdf_sop_instance_uid, v3.pdf_sop_instance_uid])
        pdf_v3 = dicomweb.retrieve_instance(study_uid, v3.pdf_series_instance_uid, v3.pdf_sop_instance_uid)
        (tmp_path / "v3.pdf").write_bytes(bytes(pdf_v3.EncapsulatedDocument)[: int(pdf_v3.EncapsulatedDocumentLength)])
        text = subprocess.run(["pdftotext", str(tmp_path / "v3.pdf"), "-"], capture_output=True, text=True).stdout
        assert "Perfusion imaging advised." in text and "Dr Anna Smith" in text


def test_sign_survives_an_unreachable_pacs(tmp_path: Path, payload_factory) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(environment="test", database_url=records_db(tmp_path / 'x.db'), service_token=TOKEN,
                        dicomweb_url="http://127.0.0.1:9/dicom-web", store_on_sign=True)
    auth = worker_auth()
    with TestClient(create_app(settings)) as client:
        rid = client.post("/api/reports", data={"payload": json.dumps(payload_factory())}, headers=auth).json()["id"]
        signed = client.post(f"/api/reports/{rid}/sign", headers=as_user("dr.smith", "radiologist"))
        assert signed.status_code == 200
        assert signed.json()["status"] == "final"
        assert signed.json()["export"]["stored_at"] is None and "unreachable" in signed.json()["export"]["error"]
        retry = client.post(f"/api/reports/{rid}/export", headers=auth)
        assert retry.status_code == 503 and retry.json()["error"] == "upstream_unavailable"
