"""The report as DICOM, for the PACS: an Encapsulated PDF and a TID 1500 measurement report (Comprehensive 3D SR).

Both belong to the report's study, copy the Patient and General Study attributes the worker read from the
source series (payload `patient` and `study`) as they are, and have deterministic UIDs: the series UIDs
derive from the report ID, the SOP Instance UIDs from (report ID, version), so storing the same version
again overwrites (Orthanc keeps one instance) instead of duplicating.

The SR cites as evidence (Current Requested Procedure Evidence Sequence, all in the report's study) every
instance of the source series the model read and the DICOM-SEG the measurements come from (payload
`segmentation`); each label's volume is a TID 1411 volumetric group whose ROI is that label's segment in
the SEG. Without a `segmentation` reference (reports from before it) the SR references no instance.

Draft and final: a signed report is PreliminaryFlag FINAL and VerificationFlag VERIFIED (the signer as
verifying observer), the PDF VERIFIED; a draft stored on request (POST /export) is PRELIMINARY and
UNVERIFIED, the PDF UNVERIFIED with "(draft, not signed)" in its Document Title. The SR's CompletionFlag
is COMPLETE in both: it holds every measurement of the segmentation it cites.
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import highdicom as hd
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from glioscope_common.measurements import Measurements
from glioscope_reporting.reports.formatting import REGION_NAMES, region, reported_regions
from glioscope_reporting.reports.schemas import ModelInfo, Patient, SegmentationRef, Study

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
UID_NAMESPACE = uuid.UUID("6f1c1f9e-8d0e-4d5a-9a43-5b6c7d8e9f01")  # fixed: UIDs are reproducible forever
MANUFACTURER = "Glioscope"
PDF_SERIES_NUMBER = 9001
SR_SERIES_NUMBER = 9002
# SNOMED CT / DCM concepts used in the SR.
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
BRAIN_MRI = hd.sr.CodedConcept("241601008", "SCT", "MR of head")
BRAIN = hd.sr.CodedConcept("12738006", "SCT", "Brain")
FINDING_TYPE = hd.sr.CodedConcept("108369006", "SCT", "Neoplasm")  # the regions WT, TC, ET
# Each BraTS label's finding, the same concept as its segment's Segmented Property Type in the SEG
# (model_repository/glioscope_unet/<version>/metadata.json).
LABEL_FINDING_TYPES = {
    1: hd.sr.CodedConcept("6574001", "SCT", "Necrosis"),
    2: hd.sr.CodedConcept("79654002", "SCT", "Edema"),
    3: hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
}
REPORT_TITLE = "Glioscope brain tumour report"
# DA, TM and CS values that DICOM accepts; anything else from the source is left empty, not copied broken.
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


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


def _study_module(ds: Dataset, study_instance_uid: str, patient: Patient, study: Study) -> None:
    """Patient and General Study modules: the source study's values as they are (the worker copies them from
    the first T1c instance), so the PDF and SR sort under the same patient and study as the images."""
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.patient_birth_date if _DATE.match(patient.patient_birth_date) else ""
    ds.PatientSex = patient.patient_sex if patient.patient_sex in ("M", "F", "O") else ""
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyDate = study.study_date if _DATE.match(study.study_date) else ""
    ds.StudyTime = study.study_time if _TIME.match(study.study_time) else ""
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
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
    title: str | None = None,
    verified: bool = False,
    now: datetime | None = None,
) -> bytes:
    """Encapsulated PDF IOD (PS3.3 A.45.1) of the report PDF, as DICOM Part 10 bytes. `verified`: the report
    is signed (VerificationFlag VERIFIED); a draft's Document Title says it is not signed."""
    now = now or datetime.now(UTC)
    if title is None:
        title = REPORT_TITLE if verified else f"{REPORT_TITLE} (draft, not signed)"
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


def _evidence(
    study_instance_uid: str, patient: Patient, study: Study, segmentation: SegmentationRef | None
) -> list[Dataset]:
    """The instances the SR cites: every instance of the source series, then the SEG. highdicom copies the
    patient and study modules from the first item, so each item carries them."""
    items: list[tuple[str, str, str]] = []  # (series, SOP class, SOP instance)
    if segmentation is not None:
        for series in segmentation.source_series:
            items += [(series.series_instance_uid, series.sop_class_uid, uid) for uid in series.sop_instance_uids]
        items.append((segmentation.series_instance_uid, SEGMENTATION_STORAGE, segmentation.sop_instance_uid))
    evidence = []
    for series_uid, class_uid, instance_uid in items:
        item = Dataset()
        item.SpecificCharacterSet = "ISO_IR 192"
        _study_module(item, study_instance_uid, patient, study)
        item.SeriesInstanceUID = series_uid
        item.SOPClassUID = class_uid
        item.SOPInstanceUID = instance_uid
        evidence.append(item)
    return evidence


def _segment_numbers(measurements: Measurements) -> dict[int, int]:
    """label value -> segment number in the SEG: build_segmentation numbers one segment per delivered label,
    1..N in the order of the label values, and the measurements list every delivered label (the model's, or
    those the study's sequences support: glioscope_common.sequence_regions)."""
    return {v.label: number for number, v in enumerate(sorted(measurements.label_volumes, key=lambda v: v.label), start=1)}


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
    segmentation: SegmentationRef | None = None,
) -> bytes:
    """TID 1500 measurement report (Comprehensive 3D SR): one measurement group per label and per region,
    each with a tracking identifier (UID derived from the report and the label/region) and its volume in mL.

    With `segmentation`, each label's group is a TID 1411 volumetric ROI group whose ROI is the label's
    segment in that SEG (source series: the SEG's grid, `source_series[0]`), and the SEG and every source
    instance are the SR's evidence. The regions (WT, TC, ET) are unions of segments, which TID 1411 cannot
    reference: they stay TID 1501 groups. Without it, every group is TID 1501 and no instance is referenced."""
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

    grid_series = segmentation.source_series[0].series_instance_uid if segmentation and segmentation.source_series else None
    segment_numbers = _segment_numbers(measurements)
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations] = []
    volumes: list[tuple[str, str, float, int | None, hd.sr.CodedConcept]] = [
        (f"label-{v.label}", f"Label {v.label} {v.name}", v.volume_ml, segment_numbers[v.label],
         LABEL_FINDING_TYPES.get(v.label, FINDING_TYPE))
        for v in sorted(measurements.label_volumes, key=lambda v: v.label)
    ]
    volumes += [(f"region-{key}", f"{key} {REGION_NAMES[key]}", region(measurements, key), None, FINDING_TYPE)
                for key in reported_regions(measurements)]  # a region not reported has no value
    for key, name, value, segment_number, finding_type in volumes:
        common = dict(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=deterministic_uid(report_id, "tracking", key), identifier=name[:64]),
            finding_type=finding_type,
            algorithm_id=algorithm,
            finding_sites=[hd.sr.FindingSite(anatomic_location=BRAIN)],
            measurements=[hd.sr.Measurement(name=VOLUME, value=round(float(value), 3), unit=ML, algorithm_id=algorithm)],
        )
        if segmentation is not None and grid_series is not None and segment_number is not None:
            segment = hd.sr.ReferencedSegment(
                sop_class_uid=SEGMENTATION_STORAGE,
                sop_instance_uid=segmentation.sop_instance_uid,
                segment_number=segment_number,
                source_series=hd.sr.SourceSeriesForSegmentation(grid_series),
            )
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common))  # type: ignore[arg-type]
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))  # type: ignore[arg-type]
    content = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=BRAIN_MRI, imaging_measurements=groups
    )
    evidence = _evidence(study_instance_uid, patient, study, segmentation)
    cited = bool(evidence)
    if not cited:
        # highdicom takes the patient and study modules from an evidence item and lists every item as
        # evidence: give it the study alone and remove the invented reference afterwards.
        placeholder = Dataset()
        placeholder.SpecificCharacterSet = "ISO_IR 192"
        _study_module(placeholder, study_instance_uid, patient, study)
        placeholder.SeriesInstanceUID = uids.sr_series_instance_uid
        placeholder.SOPClassUID = COMPREHENSIVE_3D_SR
        placeholder.SOPInstanceUID = uids.sr_sop_instance_uid
        evidence = [placeholder]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
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
        series_description="Glioscope tumour volumes (SR)",
    )
    if not cited:
        del sr.CurrentRequestedProcedureEvidenceSequence
    return _to_bytes(sr)


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
