"""The report as DICOM: Encapsulated PDF and TID 1500 SR, checked with dciodvfy (no error, no warning) and
highdicom, stored in a real Orthanc on signing, on addenda and on POST /export (idempotent per version). The SR
cites exactly the source series and the DICOM-SEG the payload names; patient and study attributes are the
source study's."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.testing import require_executable
from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.measurements import Measurements
from glioscope_reporting.main import create_app
from glioscope_reporting.reports import dicom_export
from glioscope_reporting.reports.schemas import ModelInfo, Patient, SegmentationRef, Study
from glioscope_reporting.settings import Settings

from .conftest import TOKEN, as_user, records_db, worker_auth

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
# The Patient and General Study attributes both objects copy from the source study.
STUDY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                  "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription")


def dciodvfy_findings(data: bytes, tmp_path: Path, name: str) -> list[str]:
    """dciodvfy's Error and Warning lines. Without dciodvfy: a skip, a failure with CI=true."""
    require_executable("dciodvfy", "Debian dicom3tools")
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(data)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert output.strip(), "dciodvfy printed nothing"
    return [line for line in output.splitlines() if line.startswith(("Error", "Warning"))]


def _volumes(sr: pydicom.Dataset) -> dict[str, float]:
    """Tracking identifier -> volume (mL) from a TID 1500 report (TID 1501 and TID 1411 groups)."""
    report = hd.sr.Comprehensive3DSR.from_dataset(sr)
    out = {}
    groups = [*report.content.get_image_measurement_groups(), *report.content.get_volumetric_roi_measurement_groups()]
    for group in groups:
        (measurement,) = group.get_measurements()
        assert measurement.unit.value == "ml" and measurement.unit.scheme_designator == "UCUM"
        out[group.tracking_identifier] = float(measurement.value)
    return out


def _objects(payload: dict, *, final: bool = True, with_segmentation: bool = True) -> tuple[bytes, bytes]:
    common = dict(report_id="r-1", version=3, study_instance_uid=payload["study_instance_uid"],
                  patient=Patient(**payload["patient"]), study=Study(**payload["study"]))
    pdf = dicom_export.encapsulated_pdf(b"%PDF-1.4\n% minimal\n", verified=final, **common)  # type: ignore[arg-type]
    segmentation = SegmentationRef(**payload["segmentation"]) if with_segmentation and payload.get("segmentation") else None
    sr = dicom_export.measurement_report(
        Measurements.model_validate(payload["measurements"]), model=ModelInfo(**payload["model"]),
        final=final, verifying_observer="Smith^Anna" if final else None, segmentation=segmentation,
        **common,  # type: ignore[arg-type]
    )
    return pdf, sr


@pytest.fixture
def objects(payload_factory) -> tuple[bytes, bytes, dict]:  # type: ignore[no-untyped-def]
    payload = payload_factory()
    pdf, sr = _objects(payload)
    return pdf, sr, payload


def _evidence(sr: pydicom.Dataset) -> dict[str, set[tuple[str, str]]]:
    """Series -> {(SOP class, SOP instance)} of the SR's evidence sequences."""
    out: dict[str, set[tuple[str, str]]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in sr.get(keyword, []):
            for series in study.ReferencedSeriesSequence:
                out.setdefault(str(series.SeriesInstanceUID), set()).update(
                    (str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in series.ReferencedSOPSequence
                )
    return out


def _image_references(item: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every IMAGE/COMPOSITE content item's ReferencedSOPSequence item, anywhere in the content tree."""
    found = []
    for child in item.get("ContentSequence", []):
        if child.ValueType in ("IMAGE", "COMPOSITE"):
            found.extend(child.ReferencedSOPSequence)
        found.extend(_image_references(child))
    return found


def test_dicom_objects_pass_dciodvfy(objects, payload_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pdf, sr, payload = objects
    assert dciodvfy_findings(pdf, tmp_path, "pdf") == []
    assert dciodvfy_findings(sr, tmp_path, "sr") == []
    draft_pdf, draft_sr = _objects(payload, final=False)
    assert dciodvfy_findings(draft_pdf, tmp_path, "draft-pdf") == []
    assert dciodvfy_findings(draft_sr, tmp_path, "draft-sr") == []
    _, bare_sr = _objects(payload, with_segmentation=False)
    assert dciodvfy_findings(bare_sr, tmp_path, "sr-without-references") == []

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


def _source_study(payload: dict) -> dict[str, str]:
    patient, study = payload["patient"], payload["study"]
    return {
        "PatientName": patient["patient_name"], "PatientID": patient["patient_id"],
        "PatientBirthDate": patient["patient_birth_date"], "PatientSex": patient["patient_sex"],
        "StudyInstanceUID": payload["study_instance_uid"], "StudyDate": study["study_date"],
        "StudyTime": study["study_time"], "StudyID": study["study_id"], "AccessionNumber": study["accession_number"],
        "ReferringPhysicianName": study["referring_physician_name"], "StudyDescription": study["study_description"],
    }


def test_pdf_and_sr_copy_the_source_study(objects) -> None:  # type: ignore[no-untyped-def]
    pdf, sr, payload = objects
    for name, data in (("pdf", pdf), ("sr", sr)):
        ds = pydicom.dcmread(io.BytesIO(data))
        assert {k: str(ds.get(k, "")) for k in STUDY_KEYWORDS} == _source_study(payload), name
        assert (ds.StudyTime, ds.StudyID, str(ds.ReferringPhysicianName)) == ("093012.5", "S-77", "House^Gregory^^Dr"), name


def test_sr_evidence_is_exactly_the_source_series_and_the_seg(objects) -> None:  # type: ignore[no-untyped-def]
    _, sr, payload = objects
    ds = pydicom.dcmread(io.BytesIO(sr))
    seg = payload["segmentation"]
    expected = {s["series_instance_uid"]: {(s["sop_class_uid"], uid) for uid in s["sop_instance_uids"]}
                for s in seg["source_series"]}
    expected[seg["series_instance_uid"]] = {(SEGMENTATION_STORAGE, seg["sop_instance_uid"])}
    assert _evidence(ds) == expected
    assert "PertinentOtherEvidenceSequence" not in ds  # everything is in the report's own study
    (study_item,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study_item.StudyInstanceUID == payload["study_instance_uid"]
    # The content tree references the SEG only, and only instances that are in the evidence.
    references = _image_references(ds)
    assert {(str(r.ReferencedSOPClassUID), str(r.ReferencedSOPInstanceUID)) for r in references} == {
        (SEGMENTATION_STORAGE, seg["sop_instance_uid"])}

    # One TID 1411 group per label: its segment (numbered in label order, as build_segmentation does) on the
    # SEG's grid, the T1c series listed first; the regions (unions of segments) stay TID 1501 groups.
    report = hd.sr.Comprehensive3DSR.from_dataset(ds)
    segments = {}
    for group in report.content.get_volumetric_roi_measurement_groups():
        segment_item, series_item = group.referenced_segment
        assert segment_item.referenced_sop_instance_uid == seg["sop_instance_uid"]
        assert segment_item.referenced_sop_class_uid == SEGMENTATION_STORAGE
        assert series_item.value == seg["source_series"][0]["series_instance_uid"]
        segments[group.tracking_identifier] = segment_item.referenced_segment_numbers
    assert segments == {"Label 1 necrotic core": [1], "Label 2 peritumoural oedema": [2], "Label 3 enhancing tumour": [3]}
    assert {g.tracking_identifier for g in report.content.get_image_measurement_groups()} == {
        "WT whole tumour", "TC tumour core", "ET enhancing tumour"}


def test_sr_without_a_segmentation_reference_cites_nothing(payload_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    payload = payload_factory()
    del payload["segmentation"]
    _, sr = _objects(payload)
    ds = pydicom.dcmread(io.BytesIO(sr))
    assert "CurrentRequestedProcedureEvidenceSequence" not in ds and "PertinentOtherEvidenceSequence" not in ds
    assert _image_references(ds) == []
    assert len(_volumes(ds)) == 6 and ds.StudyInstanceUID == payload["study_instance_uid"]
    assert dciodvfy_findings(sr, tmp_path, "sr-old-payload") == []


def test_draft_and_final_flags(payload_factory) -> None:  # type: ignore[no-untyped-def]
    payload = payload_factory()
    for final, flags, title in ((False, ("COMPLETE", "PRELIMINARY", "UNVERIFIED"), "(draft, not signed)"),
                                (True, ("COMPLETE", "FINAL", "VERIFIED"), None)):
        pdf, sr = (pydicom.dcmread(io.BytesIO(b)) for b in _objects(payload, final=final))
        assert (sr.CompletionFlag, sr.PreliminaryFlag, sr.VerificationFlag) == flags
        assert pdf.VerificationFlag == flags[2]
        assert ("VerifyingObserverSequence" in sr) is final
        assert (title in pdf.DocumentTitle) if title else pdf.DocumentTitle == "Glioscope brain tumour report"


def test_reports_keep_the_segmentation_reference(client: TestClient, post_report, payload_factory) -> None:  # type: ignore[no-untyped-def]
    payload = payload_factory(job_id="job-seg")
    created = post_report(payload)
    assert created.status_code == 201, created.text
    body = client.get(f"/api/reports/{created.json()['id']}", headers=worker_auth()).json()
    assert body["segmentation"] == SegmentationRef(**payload["segmentation"]).model_dump(mode="json")
    assert body["study"]["study_time"] == "093012.5" and body["study"]["study_id"] == "S-77"
    # The SR the service builds cites the payload's SEG and source series.
    service = client.app.state.report_service
    _, sr, _, _ = service.dicom_objects(created.json()["id"])
    assert set(_evidence(pydicom.dcmread(io.BytesIO(sr)))) == {
        s["series_instance_uid"] for s in payload["segmentation"]["source_series"]} | {payload["segmentation"]["series_instance_uid"]}

    old = payload_factory(job_id="job-old")
    del old["segmentation"]
    old_report = post_report(old).json()
    assert old_report["segmentation"] is None
    _, sr, _, _ = service.dicom_objects(old_report["id"])
    assert _evidence(pydicom.dcmread(io.BytesIO(sr))) == {}
    bad = payload_factory(job_id="job-bad")
    bad["segmentation"]["source_series"][0]["sop_instance_uids"] = ["1.2.x"]
    response = post_report(bad)
    assert response.status_code == 422 and "sop_instance_uids" in response.json()["detail"]


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
            assert dciodvfy_findings(buffer.getvalue(), tmp_path, f"orthanc-{name}") == [], name
            assert {k: str(ds.get(k, "")) for k in STUDY_KEYWORDS} == _source_study(payload), name
        assert set(_evidence(sr_ds)) == {s["series_instance_uid"] for s in payload["segmentation"]["source_series"]} | {
            payload["segmentation"]["series_instance_uid"]}
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


def test_each_label_group_names_its_own_finding(objects) -> None:  # type: ignore[no-untyped-def]
    """Necrosis, oedema and enhancing tumour are coded as the SEG codes their segments; the regions as neoplasm."""
    _, sr, _ = objects
    report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(sr)))
    groups = [*report.content.get_image_measurement_groups(), *report.content.get_volumetric_roi_measurement_groups()]
    findings = {group.tracking_identifier: group.finding_type.value for group in groups}
    assert findings == {
        "Label 1 necrotic core": "6574001", "Label 2 peritumoural oedema": "79654002", "Label 3 enhancing tumour": "108369006",
        "WT whole tumour": "108369006", "TC tumour core": "108369006", "ET enhancing tumour": "108369006",
    }
