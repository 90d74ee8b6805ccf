"""The report as DICOM, for the PACS: an Encapsulated PDF and a TID 1500 measurement report (Comprehensive 3D SR).

Both belong to the report's study, copy the patient module from the payload the worker sent, and have
deterministic UIDs: the series UIDs derive from the report ID, the SOP Instance UIDs from (report ID,
version), so storing the same version again overwrites (Orthanc keeps one instance) instead of duplicating.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.formatting import REGION_NAMES, region
from glioscope_reporting.reports.schemas import ModelInfo, Patient, Study

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
UID_NAMESPACE = uuid.UUID("6f1c1f9e-8d0e-4d5a-9a43-5b6c7d8e9f01")  # fixed: UIDs are reproducible forever
MANUFACTURER = "Glioscope"
PDF_SERIES_NUMBER = 9001
SR_SERIES_NUMBER = 9002
# SNOMED CT / DCM concepts used in the SR.
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
BRAIN_MRI = hd.sr.CodedConcept("241601008", "SCT", "MR of head")
BRAIN = hd.sr.CodedConcept("12738006", "SCT", "Brain")
FINDING_TYPE = hd.sr.CodedConcept("108369006", "SCT", "Neoplasm")


def deterministic_uid(*parts: object) -> str:
    """A UID under the 2.25 root (ISO/IEC 9834-8) from a UUID5 of the parts: the same parts, the same UID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '/'.join(str(p) for p in parts)).int}"


@dataclass(frozen=True)
class DicomUids:
    pdf_series_instance_uid: str
    pdf_sop_instance_uid: str
    sr_series_instance_uid: str
    sr_sop_instance_uid: str


def uids_for(report_id: str, version: int) -> DicomUids:
    return DicomUids(
        pdf_series_instance_uid=deterministic_uid(report_id, "pdf-series"),
        pdf_sop_instance_uid=deterministic_uid(report_id, version, "pdf"),
        sr_series_instance_uid=deterministic_uid(report_id, "sr-series"),
        sr_sop_instance_uid=deterministic_uid(report_id, version, "sr"),
    )


def _person_name(value: str) -> str:
    return value or ""


def _study_module(ds: Dataset, study_instance_uid: str, patient: Patient, study: Study) -> None:
    ds.PatientName = _person_name(patient.patient_name)
    ds.PatientID = patient.patient_id or ""
    ds.PatientBirthDate = patient.patient_birth_date if len(patient.patient_birth_date) == 8 else ""
    ds.PatientSex = patient.patient_sex if patient.patient_sex in ("M", "F", "O") else ""
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyDate = study.study_date if len(study.study_date) == 8 else ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = study.accession_number or ""
    if study.study_description:
        ds.StudyDescription = study.study_description[:64]


def encapsulated_pdf(
    pdf: bytes,
    *,
    report_id: str,
    version: int,
    study_instance_uid: str,
    patient: Patient,
    study: Study,
    title: str = "Glioscope brain tumour report",
    verified: bool = False,
    now: datetime | None = None,
) -> bytes:
    """Encapsulated PDF IOD (PS3.3 A.45.1) of the report PDF, as DICOM Part 10 bytes."""
    now = now or datetime.now(UTC)
    uids = uids_for(report_id, version)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    meta.MediaStorageSOPInstanceUID = uids.pdf_sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = uids.pdf_sop_instance_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    _study_module(ds, study_instance_uid, patient, study)
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = uids.pdf_series_instance_uid
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "Glioscope report (PDF)"
    # General Equipment, SC Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "SYN"
    # Encapsulated Document
    ds.InstanceNumber = version
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the PDF carries the patient's name and ID
    ds.DocumentTitle = title
    concept = Dataset()
    concept.CodeValue = "18748-4"
    concept.CodingSchemeDesignator = "LN"
    concept.CodeMeaning = "Diagnostic imaging study"
    ds.ConceptNameCodeSequence = [concept]
    ds.VerificationFlag = "VERIFIED" if verified else "UNVERIFIED"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    data = pdf if len(pdf) % 2 == 0 else pdf + b"\x00"
    ds.EncapsulatedDocument = data
    ds.EncapsulatedDocumentLength = len(pdf)
    return _to_bytes(ds)


def measurement_report(
    measurements: Measurements,
    *,
    report_id: str,
    version: int,
    study_instance_uid: str,
    patient: Patient,
    study: Study,
    model: ModelInfo,
    final: bool = False,
    verifying_observer: str | None = None,
) -> bytes:
    """TID 1500 measurement report (Comprehensive 3D SR): one measurement group per label and per region,
    each with a tracking identifier (UID derived from the report and the label/region) and its volume in mL."""
    uids = uids_for(report_id, version)
    if verifying_observer and "^" not in verifying_observer:
        verifying_observer = verifying_observer[:63] + "^"  # a one-component person name (family name only)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=deterministic_uid("device", model.name, model.version),
            name=f"{model.name} {model.version}"[:64],
            manufacturer_name=MANUFACTURER,
            model_name=model.name[:64],
        ),
    )
    context = hd.sr.ObservationContext(observer_device_context=device)
    algorithm = hd.sr.AlgorithmIdentification(name=model.name[:64], version=model.version[:64])

    groups = []
    volumes: list[tuple[str, str, float]] = [
        (f"label-{v.label}", f"Label {v.label} {v.name}", v.volume_ml) for v in sorted(measurements.label_volumes, key=lambda v: v.label)
    ]
    volumes += [(f"region-{key}", f"{key} {REGION_NAMES[key]}", region(measurements, key)) for key in ("WT", "TC", "ET")]
    for key, name, value in volumes:
        tracking = hd.sr.TrackingIdentifier(uid=deterministic_uid(report_id, "tracking", key), identifier=name[:64])
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                finding_type=FINDING_TYPE,
                algorithm_id=algorithm,
                finding_sites=[hd.sr.FindingSite(anatomic_location=BRAIN)],
                measurements=[
                    hd.sr.Measurement(name=VOLUME, value=round(float(value), 3), unit=ML, algorithm_id=algorithm)
                ],
            )
        )
    content = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=BRAIN_MRI, imaging_measurements=groups
    )
    evidence = Dataset()  # study-level attributes only: highdicom copies the patient and study modules from it
    _study_module(evidence, study_instance_uid, patient, study)
    evidence.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # not recorded (record_evidence=False)
    evidence.SOPInstanceUID = deterministic_uid(report_id, "evidence")
    evidence.SeriesInstanceUID = deterministic_uid(report_id, "evidence-series")
    sr = hd.sr.Comprehensive3DSR(
        evidence=[evidence],
        content=content,
        series_instance_uid=uids.sr_series_instance_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr_sop_instance_uid,
        instance_number=version,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=final,
        is_verified=bool(final and verifying_observer),
        verifying_observer_name=verifying_observer if final and verifying_observer else None,
        verifying_organization="Glioscope" if final and verifying_observer else None,
        record_evidence=False,
        series_description="Glioscope tumour volumes (SR)",
    )
    return _to_bytes(sr)


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
