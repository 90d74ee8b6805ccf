from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from glioscope_common.measurements import Measurements

KEY_IMAGE_NAMES = ("axial", "coronal", "sagittal")


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
    patient: Patient
    study: Study
    model: ModelInfo
    measurements: Measurements
    sections: Sections
    key_images: list[str]
    pdf_url: str


class ReportList(BaseModel):
    reports: list[ReportOut]
