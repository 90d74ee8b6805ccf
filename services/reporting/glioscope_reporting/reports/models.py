"""Tables owned by reporting (prefix `reporting_`, own Alembic version table)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
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
    # Versioning and sign-off come later; each edit will bump this.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    author: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ai_drafted: Mapped[bool] = mapped_column(Boolean, default=True)
    patient: Mapped[dict[str, Any]] = mapped_column(JSON)
    study: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    measurements: Mapped[dict[str, Any]] = mapped_column(JSON)
    sections: Mapped[dict[str, Any]] = mapped_column(JSON)

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
