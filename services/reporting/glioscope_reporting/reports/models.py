"""Tables owned by reporting (prefix `reporting_`, own Alembic version table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from glioscope_common.db import UTCDateTime, new_metadata, utcnow


class ReportingBase(DeclarativeBase):
    metadata = new_metadata()


class Report(ReportingBase):
    __tablename__ = "reporting_reports"
    __table_args__ = (UniqueConstraint("study_instance_uid", "job_id", name="uq_reporting_reports_study_job"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    job_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | final
    # Bumped by every section edit, sign-off and addendum; each version is a row of reporting_report_versions.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    author: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # True when any section's current text was written by the LLM (see ai_sections).
    ai_drafted: Mapped[bool] = mapped_column(Boolean, default=False)
    patient: Mapped[dict[str, Any]] = mapped_column(JSON)
    study: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    measurements: Mapped[dict[str, Any]] = mapped_column(JSON)
    sections: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Added by reporting_0002.
    patient_id: Mapped[str] = mapped_column(String(64), index=True, default="", server_default="")  # prior-study lookup
    study_date: Mapped[str] = mapped_column(String(16), default="", server_default="")  # YYYYMMDD
    ai_sections: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))  # section -> LLM
    structured: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))  # location, …
    signed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    signed_role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    export: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # last store to the PACS
    # Added by reporting_0003: the DICOM-SEG and source series the measurements describe (schemas.SegmentationRef);
    # null for reports created before it (their SR references no instance).
    segmentation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # sections a clinician wrote whose numbers changed with a newer segmentation (reports/refresh.py)
    review_sections: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))

    key_images: Mapped[list[KeyImage]] = relationship(
        back_populates="report", cascade="all, delete-orphan", order_by="KeyImage.position", lazy="selectin"
    )


class KeyImage(ReportingBase):
    __tablename__ = "reporting_key_images"
    __table_args__ = (UniqueConstraint("report_id", "name", name="uq_reporting_key_images_report_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reporting_reports.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))  # axial | coronal | sagittal
    position: Mapped[int] = mapped_column(Integer, default=0)
    png: Mapped[bytes] = mapped_column(LargeBinary)

    report: Mapped[Report] = relationship(back_populates="key_images")


class ReportVersion(ReportingBase):
    """One row per version of a report: the full sections after the change, who made it and when."""

    __tablename__ = "reporting_report_versions"
    __table_args__ = (UniqueConstraint("report_id", "version", name="uq_reporting_report_versions_report_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reporting_reports.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author: Mapped[str | None] = mapped_column(String(128), nullable=True)
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(32))  # created | edit:<section> | signed | addendum
    sections: Mapped[dict[str, Any]] = mapped_column(JSON)
    ai_sections: Mapped[dict[str, Any]] = mapped_column(JSON)


class Addendum(ReportingBase):
    __tablename__ = "reporting_addenda"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reporting_reports.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # the report version the addendum created
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author: Mapped[str] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    text: Mapped[str] = mapped_column(Text)


class Screenshot(ReportingBase):
    """PNG screenshots sent from the viewer (shown in the PDF after the key images)."""

    __tablename__ = "reporting_screenshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reporting_reports.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    caption: Mapped[str] = mapped_column(String(256), default="")
    author: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    png: Mapped[bytes] = mapped_column(LargeBinary)
