"""Versions of a study's tumour segmentation: version 1 is the model's output (a segmentation job),
each later version a clinician's corrected mask, saved as a new DICOM-SEG by an edit job.

A chain of versions hangs off one segmentation job (`model_job_id`): a new segmentation run of the
study starts a new chain whose version 1 is its own output; earlier chains stay in the table and
their SEG series in the PACS.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column

from glioscope_common.db import UTCDateTime, utcnow
from glioscope_common.records.models import RecordsBase, new_id


class SegmentationVersion(RecordsBase):
    """An edited version (>= 2). Its results are valid once its edit job (`job_id`) has succeeded."""

    __tablename__ = "segmentation_versions"
    __table_args__ = (UniqueConstraint("model_job_id", "version", name="uq_segmentation_versions_chain"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    model_job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    version: Mapped[int] = mapped_column(Integer)
    base_version: Mapped[int] = mapped_column(Integer)
    source_series_instance_uid: Mapped[str] = mapped_column(String(64))
    dimensions: Mapped[list[int]] = mapped_column(JSON)  # [nx, ny, nz] of the source series grid
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The labels as posted (gzip of uint8, index i + j*nx + k*nx*ny), validated by the gateway and
    # committed with the version and job rows; the worker clears it once the results are stored.
    labels_gz: Mapped[bytes | None] = deferred(mapped_column(LargeBinary, nullable=True))
    seg_series_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seg_sop_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seg_series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nifti_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    voxel_counts: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)  # label -> voxels
    measurements: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
