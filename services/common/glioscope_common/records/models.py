"""The system of record shared by the gateway (writes studies, creates jobs) and the worker (runs jobs).

Postgres in production, SQLite in the embedded configuration; schema changes go through the Alembic
history in glioscope_common/migrations.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from glioscope_common.db import UTCDateTime, new_metadata, utcnow


class RecordsBase(DeclarativeBase):
    metadata = new_metadata()


def new_id() -> str:
    return uuid.uuid4().hex


class StudyStatus(str, enum.Enum):
    receiving = "receiving"  # an upload is validating and storing it; registered when that succeeds
    received = "received"  # stored, not yet checked (e.g. arrived by C-STORE, not stable yet)
    incomplete = "incomplete"  # stable, but without the four sequences
    ready = "ready"  # the four sequences are identified
    # Stored and listed, not segmented: processing rules exist and none matched (processing_note says why;
    # glioscope_gateway.routing.rules). A user may still queue a job for it.
    not_processed = "not_processed"


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class JobKind(str, enum.Enum):
    segmentation = "segmentation"  # the model's run (inference.segmentation.run)
    edit = "edit"  # a clinician's corrected mask saved as a new SEG version (inference.editing.run)


class Study(RecordsBase):
    __tablename__ = "studies"
    # The worklist: a user's projects, newest first, a page at a time.
    __table_args__ = (Index("ix_studies_project_created_at", "project", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(256), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(8), default="")
    study_date: Mapped[str] = mapped_column(String(8), default="")
    study_time: Mapped[str] = mapped_column(String(16), default="")
    study_description: Mapped[str] = mapped_column(String(256), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(16), default="upload")  # upload | dicomweb | dimse
    # The site or research project the study belongs to: users see only their projects' studies.
    project: Mapped[str] = mapped_column(String(64), default="default", server_default="default", index=True)
    status: Mapped[StudyStatus] = mapped_column(Enum(StudyStatus, native_enum=False, length=16))
    missing_sequences: Mapped[list[str]] = mapped_column(JSON, default=list)
    sequence_overrides: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Why the study was not processed (status not_processed), e.g. "no processing rule matched (...)".
    processing_note: Mapped[str | None] = mapped_column(String(512), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    series: Mapped[list[Series]] = relationship(back_populates="study", cascade="all, delete-orphan", order_by="Series.series_number")
    jobs: Mapped[list[Job]] = relationship(back_populates="study", cascade="all, delete-orphan", order_by="Job.created_at")

    @property
    def model_runs(self) -> list[Job]:
        """The runs of the model, oldest first (edit jobs of corrected masks are not among them)."""
        return [job for job in self.jobs if job.kind == JobKind.segmentation]


class Series(RecordsBase):
    __tablename__ = "series"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_description: Mapped[str] = mapped_column(String(256), default="")
    number_of_instances: Mapped[int] = mapped_column(Integer, default=0)
    role: Mapped[str | None] = mapped_column(String(8), nullable=True)  # T1 | T1c | T2 | FLAIR | None

    study: Mapped[Study] = relationship(back_populates="series")


class Job(RecordsBase):
    """One segmentation run of one study. The row is the truth; Redis only mirrors progress."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    kind: Mapped[JobKind] = mapped_column(Enum(JobKind, native_enum=False, length=16), default=JobKind.segmentation,
                                          server_default=JobKind.segmentation.value)
    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False, length=16), default=JobState.queued, index=True)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    progress: Mapped[float] = mapped_column(default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    timings_s: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    sequence_series: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # role -> series_instance_uid used
    measurements: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    seg_series_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seg_sop_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nifti_paths: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    report_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_name: Mapped[str] = mapped_column(String(64), default="")
    model_version: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    study: Mapped[Study] = relationship(back_populates="jobs")


class WatcherCursor(RecordsBase):
    """Where the Orthanc change-feed watcher left off, so that a restart misses no stable study."""

    __tablename__ = "watcher_cursors"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    last_change: Mapped[int] = mapped_column(Integer, default=0)


class DeliveryState(str, enum.Enum):
    queued = "queued"  # due at next_attempt_at
    sent = "sent"  # the destination accepted it; never sent again
    failed = "failed"  # the last attempt failed: retried at next_attempt_at, or given up when that is empty


class Delivery(RecordsBase):
    """One result instance (SEG, SR, Encapsulated PDF) for one configured destination (glioscope_gateway.routing).
    Unique per (destination, SOP Instance UID): a result found twice, or resent, is never a second delivery."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("destination", "sop_instance_uid", name="uq_deliveries_destination_sop"),
        Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    destination: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # seg | sr | pdf
    orthanc_instance_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[DeliveryState] = mapped_column(Enum(DeliveryState, native_enum=False, length=16), default=DeliveryState.queued)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
