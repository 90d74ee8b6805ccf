from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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


class Study(BaseModel):
    study_date: str = Field("", max_length=16)
    study_description: str = Field("", max_length=256)
    accession_number: str = Field("", max_length=64)


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
