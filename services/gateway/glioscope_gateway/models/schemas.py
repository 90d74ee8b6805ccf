from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelVersionOut(BaseModel):
    name: str
    version: str = Field(description='the version a job can ask for (POST /api/studies/{uid}/jobs {"model_version": ...})')
    triton_version: str = Field(description="the version folder in the model repository (Triton's version number)")
    newest: bool = Field(description="the version a worker runs when neither the job nor GLIOSCOPE_MODEL_VERSION names one")
    algorithm_name: str
    algorithm_version: str = Field(description="what the DICOM-SEG records as the algorithm version")
    intended_use: str
    training_data: str
    accuracy: dict[str, Any] = Field(description="the metadata's accuracy figures; per-case tables left out")
