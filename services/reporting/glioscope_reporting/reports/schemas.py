from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from glioscope_common.measurements import Measurements

KEY_IMAGE_NAMES = ("axial", "coronal", "sagittal")
SECTION_NAMES = ("findings", "impression", "diagnosis", "recommendations")
SectionName = Literal["findings", "impression", "diagnosis", "recommendations"]


class Patient(BaseModel):
    patient_id: str = Field("", max_length=64)
    patient_name: str = Field("", max_length=256)
    patient_sex: str = Field("", max_length=16)
    patient_birth_date: str = Field("", max_length=16)


# A DICOM UID as the payload carries it (like study_instance_uid): digits and dots, at most 64 characters.
Uid = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9.]+$")]


class Study(BaseModel):
    """The source study's General Study attributes, copied as they are into the PDF and SR."""

    study_date: str = Field("", max_length=16)
    study_time: str = Field("", max_length=16)
    study_id: str = Field("", max_length=16)
    study_description: str = Field("", max_length=256)
    accession_number: str = Field("", max_length=64)
    referring_physician_name: str = Field("", max_length=256)


class SourceSeries(BaseModel):
    """One source series the model read (role T1, T1c, T2 or FLAIR) and all its instances."""

    role: str = Field(..., min_length=1, max_length=32)
    series_instance_uid: Uid
    sop_class_uid: Uid
    sop_instance_uids: list[Uid] = Field(..., min_length=1, max_length=4096)
    series_number: int | None = None
    series_description: str = Field("", max_length=256)


class SegmentationRef(BaseModel):
    """The DICOM-SEG the report's measurements describe (version 1 is the model's, 2.. edited ones) and the
    source series it was made from. The SEG is drawn on the grid of `source_series[0]` (the series its
    ReferencedSeriesSequence names); its segments are numbered 1..N in the order of the label values
    (glioscope_inference.dicom_seg.build_segmentation), which the SR's referenced segments follow."""

    version: int = Field(1, ge=1)
    series_instance_uid: Uid
    sop_instance_uid: Uid
    series_number: int | None = None
    source_series: list[SourceSeries] = Field(default_factory=list, max_length=16)


class ModelInfo(BaseModel):
    name: str = Field(..., min_length=1, max_length=128)
    version: str = Field(..., min_length=1, max_length=64)
    intended_use: str = Field("research use only", max_length=512)


class CreateReport(BaseModel):
    """The `payload` form field of POST /api/reports."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    study_instance_uid: str = Field(..., min_length=1, max_length=64, pattern=r"^[0-9.]+$")
    job_id: str = Field(..., min_length=1, max_length=64)
    patient: Patient = Patient()
    study: Study = Study()
    measurements: Measurements
    model: ModelInfo
    # The DICOM-SEG and source series the measurements come from: the SR references them. Absent in
    # payloads from before it existed: the SR then references no instance.
    segmentation: SegmentationRef | None = None


class RefreshSegmentation(BaseModel):
    """The `payload` form field of PUT /api/reports/{id}/segmentation: the worker, after an edit job, gives
    the new SEG version and the measurements of its labels."""

    model_config = ConfigDict(extra="forbid")

    segmentation: SegmentationRef
    measurements: Measurements


class Sections(BaseModel):
    findings: str
    impression: str
    diagnosis: str
    recommendations: str


class AiSections(BaseModel):
    findings: bool = False
    impression: bool = False
    diagnosis: bool = False
    recommendations: bool = False


class Signature(BaseModel):
    signed_by: str
    role: str
    signed_at: datetime


class AddendumOut(BaseModel):
    version: int
    created_at: datetime
    author: str
    role: str | None
    text: str


class ScreenshotOut(BaseModel):
    id: int
    position: int
    caption: str
    author: str | None
    created_at: datetime


class ExportOut(BaseModel):
    version: int
    stored_at: datetime | None = None
    pdf_sop_instance_uid: str
    sr_sop_instance_uid: str
    pdf_series_instance_uid: str
    sr_series_instance_uid: str
    error: str | None = None


class ReportOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: str
    study_instance_uid: str
    job_id: str
    status: Literal["draft", "final"]
    version: int
    created_at: datetime
    updated_at: datetime
    author: str | None
    ai_drafted: bool
    ai_sections: AiSections
    patient: Patient
    study: Study
    model: ModelInfo
    measurements: Measurements
    segmentation: SegmentationRef | None = None
    review_sections: list[SectionName] = []  # to review before signing: their numbers changed with the segmentation
    structured: dict[str, Any]
    sections: Sections
    signature: Signature | None
    addenda: list[AddendumOut]
    key_images: list[str]
    screenshots: list[ScreenshotOut]
    export: ExportOut | None
    pdf_url: str


class SectionEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=20000)


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Display name for the signature block, shown before the verified user name ("Dr A Smith (asmith)");
    # the signer and the role always come from the verified identity.
    name: str | None = Field(None, min_length=1, max_length=128)


class AddendumIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=20000)


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    author: str | None
    role: str | None
    action: str
    sections: Sections
    ai_sections: AiSections


class VersionList(BaseModel):
    versions: list[VersionOut]


class SectionDiff(BaseModel):
    section: str
    changed: bool
    diff: str  # unified diff, empty when unchanged


class DiffOut(BaseModel):
    report_id: str
    from_version: int
    to_version: int
    sections: list[SectionDiff]


class ReportList(BaseModel):
    reports: list[ReportOut]
