from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from glioscope_common.records.models import JobState

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# The labels as sent: base64 of gzip. A mask compresses far below this (a 256³ volume with a
# tumour: well under 1 MiB); the decompressed size has its own limit (glioscope_common.labelmap).
MAX_COMPRESSED_BYTES = 64 * 1024**2
MAX_ENCODED_CHARS = (MAX_COMPRESSED_BYTES + 2) // 3 * 4


class Geometry(BaseModel):
    """Cornerstone3D's volume geometry in DICOM patient coordinates (LPS, mm): voxel (i, j, k), at
    byte i + j*nx + k*nx*ny of the labels, lies at origin + i*sx*direction[0:3] +
    j*sy*direction[3:6] + k*sz*direction[6:9]."""

    dimensions: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        min_length=3, max_length=3, description="[nx, ny, nz]"
    )
    spacing: list[Positive] = Field(min_length=3, max_length=3, description="[sx, sy, sz] mm")
    origin: list[Finite] = Field(min_length=3, max_length=3, description="LPS mm of voxel (0, 0, 0)")
    direction: list[Finite] = Field(min_length=9, max_length=9, description="i, j and k axis directions (LPS)")


class VersionIn(BaseModel):
    base_version: int = Field(ge=1, le=1_000_000, description="the version the edit started from; must be the latest")
    source_series_instance_uid: str = Field(
        min_length=1, max_length=64, description="the series whose grid the labels are on (normally the T1c)"
    )
    geometry: Geometry
    labels: str = Field(
        min_length=1, max_length=MAX_ENCODED_CHARS,
        description="base64 of gzip of uint8 labels (0 background, 1 necrotic core, 2 oedema, 3 enhancing tumour)",
    )


class VersionCreated(BaseModel):
    version: int
    job_id: str = Field(description="the edit job: GET /api/jobs/{id} or its event stream")


class VersionOut(BaseModel):
    version: int
    source: Literal["model", "edited"]
    created_by: str = Field(description="the username of the editor; for version 1 the model's name")
    created_at: datetime
    job_id: str
    state: JobState = Field(description="the state of the job that produces this version (version 1: succeeded)")
    seg_series_instance_uid: str | None = Field(description="null until the version's job has succeeded")
    seg_sop_instance_uid: str | None
    voxel_counts: dict[str, int] | None = Field(description="label -> voxels on the source grid; null until done")
    model_version: str = Field(description="the model version whose segmentation this is (or an edit of)")
