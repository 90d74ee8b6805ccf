"""Segmentation-version rows for the worker: read the posted labels, record the results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from glioscope_common.db import session_scope
from glioscope_common.records.segmentations import SegmentationVersion


class VersionRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def for_job(self, job_id: str) -> SegmentationVersion | None:
        """The version an edit job produces, with its posted labels."""
        with session_scope(self._sessions) as session:
            statement = select(SegmentationVersion).where(SegmentationVersion.job_id == job_id)
            return session.scalars(statement.options(undefer(SegmentationVersion.labels_gz))).first()

    def record(self, version_id: str, **fields: Any) -> None:
        with session_scope(self._sessions) as session:
            session.execute(update(SegmentationVersion).where(SegmentationVersion.id == version_id).values(**fields))

    def clear_labels(self, version_id: str) -> None:
        """The labels live on in the NIfTI service and the SEG once the job succeeded: drop the copy."""
        self.record(version_id, labels_gz=None)
