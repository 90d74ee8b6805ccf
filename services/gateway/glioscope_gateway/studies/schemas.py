from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from glioscope_common.records.models import JobState, StudyStatus


class SeriesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    series_instance_uid: str
    series_number: int | None
    modality: str
    series_description: str
    number_of_instances: int
    role: str | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    state: JobState
    stage: str
    progress: float
    attempts: int
    error: str | None
    timings_s: dict[str, float]
    sequence_series: dict[str, str]
    measurements: dict[str, Any] | None
    seg_series_instance_uid: str | None
    seg_sop_instance_uid: str | None
    nifti_paths: dict[str, str]
    report_id: str | None
    model_name: str
    model_version: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class StudyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    study_instance_uid: str
    patient_id: str
    patient_name: str
    patient_sex: str
    patient_birth_date: str
    study_date: str
    study_description: str
    accession_number: str
    source: str
    project: str
    status: StudyStatus
    missing_sequences: list[str]
    sequence_overrides: dict[str, str]
    # Why a study with status not_processed was not segmented (processing rules); null otherwise.
    processing_note: str | None = None
    created_at: datetime
    series: list[SeriesOut]
    latest_job: JobOut | None = None


class UploadResult(BaseModel):
    study: StudyOut
    job: JobOut | None
    created: bool = Field(description="false when the study was already registered (the upload is idempotent)")
    instances_received: int


class JobIn(BaseModel):
    model_version: str = Field(
        "", max_length=32,
        description='the model version to run, e.g. "0.3.1" (GET /api/models); empty: the worker\'s default',
    )


class SequenceOverrides(BaseModel):
    """Role → SeriesInstanceUID, e.g. {"T1c": "1.2.3"}: wins over automatic identification."""

    overrides: dict[str, str]
