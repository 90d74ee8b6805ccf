"""The de-identified export leaks no identity (issue 18, finding 6).

A study with distinctive identifiers goes into a real Orthanc: four MR series (through the gateway's
upload), a DICOM-SEG of the T1c built by the product's own code, and the report as the product stores
it: an Encapsulated PDF whose text carries the patient's name, ID, birth date, accession number and
Study Instance UID, and a TID 1500 SR. A researcher exports it through the gateway's API; every file
of the zip is scanned — its raw bytes, the decoded text of every string element at any depth and the
text of any PDF in it (pdftotext) — for each source identifier and every source UID.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from glioscope_common.dev.synthetic_study import write_study
from glioscope_common.dicom.read import read_series
from glioscope_common.measurements import LabelVolume, Measurements
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.dev.testing import REPO_ROOT, require_service
from glioscope_common.volume import Volume
from glioscope_gateway.studies.export import iter_elements
from glioscope_inference.dicom_seg import build_segmentation
from glioscope_reporting.reports import dicom_export
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Study

from .conftest import gw

pytestmark = pytest.mark.services

RESEARCHER = ("security-researcher", "security-researcher-password-42")

# Distinctive values: none of them can occur in a de-identified file by chance.
PATIENT_NAME = "Quixwellbrand^Zephyrine^Ottoline"
PATIENT_ID = "QZX-7731-PID"
BIRTH_DATE = "19570314"
ACCESSION = "ACCQZ99172"
INSTITUTION = "Saint Zebulon Neurological Institute"
REFERRING = "Vantercombe^Hieronymus"
OPERATOR = "Plumtrelawny^Agathe"
STUDY_ID = "STQZ4411"
STUDY_DATE = "20230517"
OTHER_DATES = ("20230518", "20230519")  # instance creation, contribution
IDENTIFIERS = [
    "Quixwellbrand", "Zephyrine", "Ottoline", PATIENT_ID, BIRTH_DATE, "1957-03-14", "14.03.1957", "14/03/1957",
    ACCESSION, "Zebulon", INSTITUTION, "Vantercombe", "Hieronymus", "Plumtrelawny", "Agathe", STUDY_ID,
    STUDY_DATE, "2023-05-17", *OTHER_DATES,
]
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"


# ------------------------------------------------------------------------------------------ the source


@dataclass
class Source:
    study_instance_uid: str
    mr_files: list[bytes]
    other_instances: list[bytes]  # SEG, PDF, SR
    uids: set[str] = field(default_factory=set)  # every non-standard UID in any source file


def personalise(ds: Dataset) -> None:
    """The identifying attributes a hospital's images carry, on one MR instance."""
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "F"
    ds.AccessionNumber = ACCESSION
    ds.InstitutionName = INSTITUTION
    ds.InstitutionAddress = "1 Zebulon Road"
    ds.ReferringPhysicianName = REFERRING
    ds.OperatorsName = OPERATOR
    ds.StudyID = STUDY_ID
    ds.StudyDescription = "MRI brain Quixwellbrand"
    ds.ImageComments = f"scanned for {PATIENT_NAME} ({PATIENT_ID})"
    ds.OtherPatientIDs = f"{PATIENT_ID}-OLD"
    ds.InstanceCreationDate = OTHER_DATES[0]
    ds.InstanceCreationTime = "101112"
    equipment = Dataset()
    equipment.Manufacturer = "Glioscope"
    equipment.InstitutionName = INSTITUTION
    equipment.ContributionDateTime = f"{OTHER_DATES[1]}101010"
    equipment.ContributionDescription = f"converted for {PATIENT_NAME}"
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = "109103", "DCM", "Modifying Equipment"
    equipment.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.ContributingEquipmentSequence = Sequence([equipment])
    ds.add_new(0x00291010, "LO", f"private {PATIENT_NAME}")  # a private element (no creator: an illegal one)


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def report_pdf(study_instance_uid: str) -> bytes:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    lines = [
        "Glioscope brain tumour report",
        f"Patient: Quixwellbrand, Zephyrine Ottoline   ID: {PATIENT_ID}",
        f"Born: 14.03.1957 ({BIRTH_DATE})   Accession: {ACCESSION}",
        f"Study: {study_instance_uid}",
        f"Referred by Dr Hieronymus Vantercombe, {INSTITUTION}",
    ]
    for n, line in enumerate(lines):
        page.drawString(40, 800 - 18 * n, line)
    page.save()
    return buffer.getvalue()


def non_standard_uids(ds: Dataset) -> set[str]:
    found: set[str] = set()
    for element in iter_elements(ds):
        if element.VR == "UI" and element.value:
            values = element.value if element.VM > 1 else [element.value]
            found |= {str(v) for v in values if str(v) and not str(v).startswith("1.2.840.10008.")}
    return found


def build_source(folder: Path) -> Source:
    rng = np.random.default_rng(18)
    affine = np.array([[0.9, 0.1, 0, -20], [-0.1, 0.9, 0, -30], [0, 0, 2.0, -10], [0, 0, 0, 1]])
    images = {role: Volume(rng.uniform(0, 1000, (28, 24, 12)).astype(np.float32), affine)
              for role in ("T1", "T1c", "T2", "FLAIR")}
    study_uid, series = write_study(images, None, patient_id=PATIENT_ID, patient_name=PATIENT_NAME,
                                    study_description="MRI brain", seed=18)
    for datasets in series.values():
        for ds in datasets:
            personalise(ds)
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    mr_files = [to_bytes(ds) for datasets in series.values() for ds in datasets]

    # The segmentation as the worker builds it (highdicom copies the patient and study modules).
    t1c = series["T1c"]
    grid = read_series(t1c)
    labels = np.zeros(grid.data.shape, dtype=np.uint8)
    labels[8:16, 8:14, 3:7] = 2
    labels[10:14, 9:12, 4:6] = 1
    labels[11:13, 10:11, 4:6] = 3
    metadata = ModelMetadata.load(REPO_ROOT / "model_repository" / "glioscope_unet")
    seg = build_segmentation(labels, t1c, metadata)

    # The report as the reporting service stores it: an Encapsulated PDF and a TID 1500 SR.
    patient = Patient(patient_id=PATIENT_ID, patient_name=PATIENT_NAME, patient_sex="F", patient_birth_date=BIRTH_DATE)
    study = Study(study_date=STUDY_DATE, study_description="MRI brain Quixwellbrand", accession_number=ACCESSION)
    common = dict(report_id="security-report", version=1, study_instance_uid=study_uid, patient=patient, study=study)
    pdf = dicom_export.encapsulated_pdf(report_pdf(study_uid), **common)  # type: ignore[arg-type]
    measurements = Measurements(
        label_volumes=[LabelVolume(label=v, name=f"label {v}", volume_ml=1.0 * v) for v in (1, 2, 3)],
        region_volumes_ml={"WT": 6.0, "TC": 4.0, "ET": 3.0},
        max_axial_diameter_mm=12.0, perpendicular_diameter_mm=8.0, bidimensional_product_mm2=96.0,
    )
    sr = dicom_export.measurement_report(measurements, model=ModelInfo(name="glioscope_unet", version="0.3.1"),
                                         final=True, verifying_observer=REFERRING, **common)  # type: ignore[arg-type]
    others = [to_bytes(seg), pdf, sr]
    uids: set[str] = set()
    for data in mr_files + others:
        uids |= non_standard_uids(pydicom.dcmread(io.BytesIO(data)))
    assert study_uid in uids and len(uids) > len(mr_files)
    source = Source(study_uid, mr_files, others, uids)
    # The source really carries what must not leave: the PDF's text has the identity.
    text = pdf_text(pydicom.dcmread(io.BytesIO(pdf)).EncapsulatedDocument, folder)
    assert PATIENT_ID in text and ACCESSION in text and BIRTH_DATE in text and study_uid in text
    return source


# ------------------------------------------------------------------------------------------ scanning


def pdf_text(document: bytes, folder: Path) -> str:
    if shutil.which("pdftotext") is None:
        require_service("pdftotext", "poppler-utils is not installed")  # fails in CI, skips elsewhere
    path = folder / "document.pdf"
    path.write_bytes(document)
    result = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True)
    return result.stdout.decode("utf-8", "replace")


def text_of(element: pydicom.DataElement) -> str:
    """The decoded value of a string-like element; bytes (OB, UN, private) decoded leniently."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if element.VR == "SQ":
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def leaks(text: str, secrets: list[str]) -> list[str]:
    lowered = text.lower()
    return [s for s in secrets if s.lower() in lowered]


# ------------------------------------------------------------------------------------------ the gateway


def put_in_pacs(gateway: TestClient, source: Source, extra: list[bytes] | None = None) -> None:
    """The MR series through the gateway's upload; the SEG (as the worker stores it), the PDF and the SR (as the
    reporting service stores them) by STOW-RS to Orthanc."""
    files = [("files", (f"{n}.dcm", data, "application/dicom")) for n, data in enumerate(source.mr_files)]
    upload = gateway.post("/api/studies", files=files)
    assert upload.status_code in (200, 201, 202), upload.text
    assert upload.json()["study"]["study_instance_uid"] == source.study_instance_uid
    stored = gateway.app.state.container.dicomweb.store_instances(  # type: ignore[attr-defined]
        [*source.other_instances, *(extra or [])], source.study_instance_uid)
    assert not stored.failed_sop_instance_uids, stored


def researcher(gateway: TestClient) -> dict[str, str]:
    admin = gw.bearer(gw.sign_in(gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    created = gateway.post("/api/admin/users", json={"username": RESEARCHER[0], "password": RESEARCHER[1],
                                                     "role": "researcher", "projects": ["default"]}, headers=admin)
    assert created.status_code in (200, 201), created.text
    return gw.bearer(gw.sign_in(gateway, *RESEARCHER)["access_token"])


def orthanc_studies(gateway: TestClient) -> int:
    return len(gateway.app.state.container.orthanc._request("GET", "/studies").json())  # type: ignore[attr-defined]


def test_the_export_carries_no_source_identifier(secure_gateway: TestClient, tmp_path: Path) -> None:
    gateway = secure_gateway
    source = build_source(tmp_path)
    put_in_pacs(gateway, source)
    studies_before = orthanc_studies(gateway)
    response = gateway.post(f"/api/studies/{source.study_instance_uid}/export", headers=researcher(gateway))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert orthanc_studies(gateway) == studies_before  # the anonymised copy is gone from the PACS
    check_export(response.content, source, tmp_path)


def check_export(content: bytes, source: Source, tmp_path: Path) -> None:
    secrets = IDENTIFIERS + sorted(source.uids)
    exported: list[Dataset] = []
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        assert not leaks(" ".join(archive.namelist()), secrets), "identifiers in the zip's file names"
        for name in names:
            data = archive.read(name)
            # Raw bytes: whatever the encoding of the element, an ASCII identifier would show.
            raw = data.decode("latin-1")
            assert not leaks(raw, secrets), (name, leaks(raw, secrets))
            ds = pydicom.dcmread(io.BytesIO(data))
            for element in [*iter_elements(ds.file_meta), *iter_elements(ds)]:
                found = leaks(text_of(element), secrets)
                assert not found, (name, element.keyword or str(element.tag), found)
                assert not element.tag.is_private, (name, element)
                # Retain Longitudinal Temporal Information: no. No date or time survives, at any depth.
                if element.VR in ("DA", "DT", "TM"):
                    assert not element.value, (name, element)
                if element.VR == "PN" and element.tag != 0x00100010:
                    assert not element.value, (name, element)
            for keyword in ("InstanceCreationDate", "InstanceCreationTime", "ContributionDateTime"):
                assert not any(e.keyword == keyword and e.value for e in iter_elements(ds)), (name, keyword)
            # Any PDF anywhere in the file (there should be none): its text is scanned too.
            start = data.find(b"%PDF")
            if start >= 0 or "EncapsulatedDocument" in ds:
                document = ds.EncapsulatedDocument if "EncapsulatedDocument" in ds else data[start:]
                text = pdf_text(document, tmp_path)
                assert not leaks(text, secrets), (name, leaks(text, secrets))
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.DeidentificationMethod
            methods = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
            assert {"113100", "113105"} <= methods, methods  # Basic Profile, Clean Descriptors
            assert ds.get("LongitudinalTemporalInformationModified") == "REMOVED"
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            exported.append(ds)

    # Documents are left out; the images and the segmentation are all there.
    sop_classes = [str(ds.SOPClassUID) for ds in exported]
    assert ENCAPSULATED_PDF not in sop_classes
    assert not [c for c in sop_classes if c.startswith("1.2.840.10008.5.1.4.1.1.88.")], "no SR"
    assert not [ds for ds in exported if ds.get("Modality") in ("SR", "DOC")]
    images = [ds for ds in exported if ds.SOPClassUID == MR_IMAGE]
    assert len(images) == len(source.mr_files)
    assert len(names) == len(source.mr_files) + 1
    assert len({str(ds.StudyInstanceUID) for ds in exported}) == 1
    assert len({str(ds.SOPInstanceUID) for ds in exported}) == len(exported)
    assert all(ds.PatientName == exported[0].PatientName and ds.PatientID == exported[0].PatientID for ds in exported)

    # The SEG still points at the exported T1c instances: the UIDs were remapped consistently.
    (seg,) = [ds for ds in exported if ds.SOPClassUID == SEGMENTATION]
    image_uids = {str(ds.SOPInstanceUID): ds for ds in images}
    (referenced_series,) = seg.ReferencedSeriesSequence
    t1c = [ds for ds in images if str(ds.SeriesInstanceUID) == str(referenced_series.SeriesInstanceUID)]
    assert len(t1c) == len(source.mr_files) // 4
    referenced = {str(item.ReferencedSOPInstanceUID) for item in referenced_series.ReferencedInstanceSequence}
    assert referenced == {str(ds.SOPInstanceUID) for ds in t1c}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        for derivation in frame.get("DerivationImageSequence", []):
            for item in derivation.SourceImageSequence:
                assert str(item.ReferencedSOPInstanceUID) in image_uids
    assert seg.FrameOfReferenceUID == t1c[0].FrameOfReferenceUID
    # Clean Descriptors: series descriptions replaced by the series' role; other free text gone.
    assert sorted(str(ds.get("SeriesDescription", "")) for ds in [seg, *{str(d.SeriesInstanceUID): d for d in images}.values()]) \
        == sorted(["FLAIR", "Segmentation", "T1", "T1c", "T2"])
    assert {str(ds.get("SeriesDescription")) for ds in t1c} == {"T1c"}
    assert not any(ds.get("StudyDescription") for ds in exported)


def test_a_surviving_identifier_fails_the_export(secure_gateway: TestClient, tmp_path: Path) -> None:
    """Fail closed: an identifier in an attribute that neither the profile nor the options touch (here the patient ID
    in SequenceName, which Table E.1-1 keeps) stops the export with an error; nothing is sent, no copy is left."""
    gateway = secure_gateway
    source = build_source(tmp_path)
    odd = pydicom.dcmread(io.BytesIO(source.mr_files[0]))
    odd.SequenceName = PATIENT_ID
    odd.SOPInstanceUID = odd.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    odd.InstanceNumber = 99
    put_in_pacs(gateway, source, extra=[to_bytes(odd)])
    studies_before = orthanc_studies(gateway)
    response = gateway.post(f"/api/studies/{source.study_instance_uid}/export", headers=researcher(gateway))
    assert response.status_code == 500, response.text
    assert response.json()["error"] == "deidentification_failed"
    assert PATIENT_ID not in response.text and "SequenceName" in response.text
    assert orthanc_studies(gateway) == studies_before


def test_an_undeletable_copy_fails_the_export_visibly(secure_gateway: TestClient, tmp_path: Path, monkeypatch) -> None:
    """The PACS refuses to delete the anonymised copy: the export is refused (503, nothing sent), the copy is
    counted in glioscope_degraded_total{component="export_cleanup"}. Catches a copy left behind with only a
    warning in the log."""
    from prometheus_client import REGISTRY

    from glioscope_gateway.studies import export

    gateway = secure_gateway
    source = build_source(tmp_path)
    put_in_pacs(gateway, source)
    studies_before = orthanc_studies(gateway)
    orthanc = gateway.app.state.container.orthanc  # type: ignore[attr-defined]
    attempts: list[str] = []

    def refuse(copy: str) -> None:
        attempts.append(copy)
        raise httpx.ConnectError("the PACS refuses the delete")

    def degraded() -> float:
        return REGISTRY.get_sample_value("glioscope_degraded_total", {"component": "export_cleanup"}) or 0.0

    before = degraded()
    monkeypatch.setattr(export.time, "sleep", lambda s: None)
    monkeypatch.setattr(orthanc, "delete_study", refuse)
    response = gateway.post(f"/api/studies/{source.study_instance_uid}/export", headers=researcher(gateway))
    assert response.status_code == 503, response.text
    assert "could not be removed" in response.json()["detail"] and response.headers["content-type"] != "application/zip"
    assert len(attempts) == 3 and len(set(attempts)) == 1
    assert degraded() == before + 1
    monkeypatch.undo()
    assert orthanc_studies(gateway) == studies_before + 1  # the copy is there, as the error says
    orthanc.delete_study(attempts[0])
    assert orthanc_studies(gateway) == studies_before


def test_the_fail_closed_check_refuses_identifiers_not_common_words() -> None:
    """The check behind `deidentification_failed`: IDs as tokens, full names as words, source UIDs whole; a word
    of a name alone, a coded concept equal to a numeric ID or a new UID's digits do not refuse an export."""
    from pydicom.dataelem import DataElement

    from glioscope_gateway.studies.export import SourceIdentity

    identity = SourceIdentity(uids={"1.2.3.4.5"})
    identity.add_name("Brain^Anna")
    identity.add_name("Anonymous")
    identity.add_code("113076")
    identity.add_code("QZX-7731-PID")
    identity.add_code(BIRTH_DATE)
    identity.add_code("BRAIN")

    def found(keyword_vr: tuple[int, str], value: object) -> bool:
        return identity.found_in(DataElement(keyword_vr[0], keyword_vr[1], value))

    sequence_name, body_part, label, code_value, uid, comments = (
        (0x00180024, "SH"), (0x00180015, "CS"), (0x00620005, "LO"), (0x00080100, "SH"), (0x00080018, "UI"), (0x00204000, "LT"))
    assert found(sequence_name, "QZX-7731-PID")
    assert found(comments, "seen for Anna Brain, born 19570314")
    assert found(label, "brain, anna")
    assert found(comments, "ref 1.2.3.4.5 ")
    assert found(uid, "1.2.3.4.5")
    assert found(label, "x113076") is False and found(label, "113076")
    assert not found(body_part, "BRAIN")  # a one-word name or a digit-less ID is not refused on
    assert not found(label, "Anonymous")
    assert not found(code_value, "113076")  # DCM "Segmentation"
    assert not found(uid, "2.25.1195703141234")  # digits of a new UID
    assert not found(label, "Brainanna")
