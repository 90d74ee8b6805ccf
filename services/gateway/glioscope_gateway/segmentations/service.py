"""Segmentation versions of a study: listing, resolving a version for the result routes, and
accepting an edited mask.

An edit is validated here completely (version, source series, geometry against the PACS, labels),
then the version row, the posted labels and an edit job are committed in one transaction and the
job is enqueued (`inference.editing.run`): the worker builds the SEG, the NIfTI and the
measurements. A lost message is recovered like any job (the watcher re-enqueues stale jobs).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pydicom
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope
from glioscope_common.dicom import LPS_TO_RAS
from glioscope_common.dicom.read import series_geometry
from glioscope_common.dicomweb.protocol import DicomWeb
from glioscope_common.errors import Conflict, NotFound, UnprocessableInput
from glioscope_common.labelmap import decode_labels
from glioscope_common.measurements import REGIONS
from glioscope_common.records.models import Job, JobKind, JobState, Study
from glioscope_common.records.segmentations import SegmentationVersion
from glioscope_gateway.jobs.queue import CeleryJobQueue, JobQueue
from glioscope_gateway.segmentations.schemas import MAX_COMPRESSED_BYTES, Geometry, VersionCreated, VersionIn
from glioscope_gateway.studies.service import StudyService

logger = logging.getLogger("glioscope.gateway.segmentations")

EDIT_TASK = "inference.editing.run"
MAX_LABEL = max(REGIONS["WT"])  # 1 necrotic core, 2 oedema, 3 enhancing tumour, 5 whole tumour (no T1c)
GEOMETRY_TOLERANCE = 0.1  # of the smallest voxel spacing, at any corner of the grid
MIN_TOLERANCE_MM = 0.01


class CeleryEditQueue(CeleryJobQueue):
    task = EDIT_TASK


@dataclass
class Version:
    version: int
    source: str  # model | edited
    created_by: str
    created_at: datetime
    job_id: str
    state: JobState
    seg_series_instance_uid: str | None
    seg_sop_instance_uid: str | None
    voxel_counts: dict[str, int] | None
    measurements: dict[str, Any] | None
    nifti_path: str | None
    model_version: str  # the model version that made version 1 (an edit's too: it changes that mask)


def latest_model_job(study: Study) -> Job | None:
    """The latest succeeded segmentation job: its output is version 1 of the current chain."""
    done = [j for j in study.model_runs if j.state == JobState.succeeded]
    return done[-1] if done else None


def _model_version(job: Job) -> Version:
    return Version(
        version=1, source="model", created_by=job.model_name or "model",
        created_at=job.finished_at or job.created_at, job_id=job.id, state=job.state,
        seg_series_instance_uid=job.seg_series_instance_uid, seg_sop_instance_uid=job.seg_sop_instance_uid,
        voxel_counts=None, measurements=job.measurements, nifti_path=job.nifti_paths.get("mask"),
        model_version=job.model_version,
    )


def _edited_version(row: SegmentationVersion, job: Job, model_version: str) -> Version:
    done = job.state == JobState.succeeded
    return Version(
        version=row.version, source="edited", created_by=row.created_by, created_at=row.created_at,
        job_id=row.job_id, state=job.state,
        seg_series_instance_uid=row.seg_series_instance_uid if done else None,
        seg_sop_instance_uid=row.seg_sop_instance_uid if done else None,
        voxel_counts=row.voxel_counts if done else None,
        measurements=row.measurements if done else None,
        nifti_path=row.nifti_path if done else None,
        model_version=model_version,
    )


def _edits(session: Session, model_job_id: str) -> list[tuple[SegmentationVersion, Job]]:
    statement = (
        select(SegmentationVersion, Job)
        .join(Job, Job.id == SegmentationVersion.job_id)
        .where(SegmentationVersion.model_job_id == model_job_id)
        .order_by(SegmentationVersion.version)
    )
    return [(row, job) for row, job in session.execute(statement).all()]


def latest_version_number(edits: Sequence[tuple[SegmentationVersion, Job]]) -> int:
    """The version an edit must start from: the highest number (1: the model's), also while its job
    is pending or after it failed (the labels are a whole mask, so any base is content-safe; the
    number only guards against overwriting a concurrent save, and every client agrees on it)."""
    return max([1, *(row.version for row, _ in edits)])


# -- validation ------------------------------------------------------------------------------------


def decode_base64(text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UnprocessableInput("labels: not valid base64") from None
    if len(data) > MAX_COMPRESSED_BYTES:
        raise UnprocessableInput(f"labels: the compressed labels exceed {MAX_COMPRESSED_BYTES} bytes")
    return data


def geometry_affine(geometry: Geometry) -> np.ndarray:
    """The posted geometry as a 4x4 voxel -> LPS affine."""
    affine = np.eye(4)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)  # rows: i, j, k axis directions
    affine[:3, :3] = (direction * np.asarray(geometry.spacing, dtype=float)[:, None]).T
    affine[:3, 3] = geometry.origin
    return affine


def _no_bulk_data(uri: str) -> bytes:
    return b""


def source_grid(metadata: Sequence[dict]) -> tuple[tuple[int, int, int], np.ndarray]:
    """(nx, ny, nz) and the voxel -> LPS affine of a series, from its WADO-RS metadata (DICOM JSON)."""
    datasets = [pydicom.Dataset.from_json(item, bulk_data_uri_handler=_no_bulk_data) for item in metadata]
    try:
        ordered, ras = series_geometry(datasets)
    except UnprocessableInput as exc:
        raise UnprocessableInput(f"the source series is not an image volume: {exc.detail}") from exc
    if len(ordered) == 1:
        raise UnprocessableInput("the source series is a multi-frame instance: not supported for edits")
    first = ordered[0]
    return (int(first.Columns), int(first.Rows), len(ordered)), LPS_TO_RAS @ ras


def check_geometry(geometry: Geometry, dimensions: tuple[int, int, int], lps: np.ndarray) -> None:
    """The posted grid must be the source series' grid: same dimensions, and every corner voxel at
    the same patient position within a tenth of the smallest voxel spacing."""
    if tuple(geometry.dimensions) != dimensions:
        raise UnprocessableInput(
            f"geometry: dimensions {list(geometry.dimensions)} do not match the source series {list(dimensions)}"
        )
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, n - 1) for n in dimensions])])
    posted = corners @ geometry_affine(geometry).T
    actual = corners @ lps.T
    offset = float(np.linalg.norm(posted[:, :3] - actual[:, :3], axis=1).max())
    tolerance = max(MIN_TOLERANCE_MM, GEOMETRY_TOLERANCE * float(np.linalg.norm(lps[:3, :3], axis=0).min()))
    if offset > tolerance:
        raise UnprocessableInput(
            f"geometry: the grid lies up to {offset:.3g} mm off the source series' grid (tolerance {tolerance:.3g} mm); "
            "origin, spacing or direction differ"
        )


def segment_voxel_counts(seg: pydicom.Dataset) -> dict[str, int]:
    """Voxels per label of a BINARY DICOM-SEG (segments with a Glioscope TrackingID give their label)."""
    label_of: dict[int, int] = {}
    for item in seg.SegmentSequence:
        tracking = str(item.get("TrackingID", "") or "")
        suffix = tracking.removeprefix("glioscope-label-")
        number = int(item.SegmentNumber)
        label_of[number] = int(suffix) if suffix != tracking and suffix.isdigit() else number
    counts = {str(label): 0 for label in label_of.values()}
    frames = seg.get("PerFrameFunctionalGroupsSequence") or []
    if frames:
        pixels = np.asarray(seg.pixel_array).reshape(len(frames), int(seg.Rows), int(seg.Columns))
        for frame, item in zip(pixels, frames, strict=True):
            number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
            counts[str(label_of.get(number, number))] += int(np.count_nonzero(frame))
    return counts


class SegmentationVersions:
    def __init__(
        self, sessions: sessionmaker[Session], studies: StudyService, dicomweb: DicomWeb, queue: JobQueue
    ) -> None:
        self._sessions = sessions
        self._studies = studies
        self._dicomweb = dicomweb
        self._queue = queue
        self._model_counts: dict[str, dict[str, int]] = {}  # model job id -> voxel counts of its SEG
        self._lock = threading.Lock()

    # -- reads ---------------------------------------------------------------------------------
    def chain(self, model_job: Job) -> list[Version]:
        """Version 1 (the model's) and the edits made on it, oldest first."""
        with session_scope(self._sessions) as session:
            edits = _edits(session, model_job.id)
        return [_model_version(model_job), *(_edited_version(row, job, model_job.model_version) for row, job in edits)]

    def list(self, study_uid: str, projects: Sequence[str] | None) -> list[Version]:
        model_job = latest_model_job(self._studies.get(study_uid, projects))
        if model_job is None:
            return []
        versions = self.chain(model_job)
        versions[0].voxel_counts = self._model_voxel_counts(study_uid, model_job)
        return versions

    def resolve(self, model_job: Job, number: int | None = None) -> Version:
        """A version with results (its job succeeded): `number`, or the latest one."""
        versions = self.chain(model_job)
        if number is None:
            return [v for v in versions if v.state == JobState.succeeded][-1]
        found = next((v for v in versions if v.version == number), None)
        if found is None:
            raise NotFound(f"no segmentation version {number} (latest: {versions[-1].version})")
        if found.state != JobState.succeeded:
            raise NotFound(f"segmentation version {number} has no result (its job is {found.state.value})")
        return found

    def _model_voxel_counts(self, study_uid: str, job: Job) -> dict[str, int] | None:
        with self._lock:
            cached = self._model_counts.get(job.id)
        if cached is not None or not (job.seg_series_instance_uid and job.seg_sop_instance_uid):
            return cached
        seg = self._dicomweb.retrieve_instance(study_uid, job.seg_series_instance_uid, job.seg_sop_instance_uid)
        counts = segment_voxel_counts(seg)
        with self._lock:
            if len(self._model_counts) > 1024:
                self._model_counts.clear()
            self._model_counts[job.id] = counts
        return counts

    # -- edits ---------------------------------------------------------------------------------
    def submit(self, study_uid: str, projects: Sequence[str] | None, creator: str, body: VersionIn) -> VersionCreated:
        study = self._studies.get(study_uid, projects)
        model_job = latest_model_job(study)
        if model_job is None:
            raise Conflict("the study has no finished segmentation to edit")
        with session_scope(self._sessions) as session:
            latest = latest_version_number(_edits(session, model_job.id))
        if body.base_version != latest:
            raise Conflict(f"version {body.base_version} is not the latest version ({latest}): reload it and edit again")
        source_uid = body.source_series_instance_uid
        if source_uid not in {s.series_instance_uid for s in study.series}:
            raise UnprocessableInput("source_series_instance_uid: not a series of this study")
        metadata = self._dicomweb.retrieve_series_metadata(study_uid, source_uid)
        if not metadata:
            raise UnprocessableInput("source_series_instance_uid: the series is not in the PACS")
        dimensions, lps = source_grid(metadata)
        check_geometry(body.geometry, dimensions, lps)
        compressed = decode_base64(body.labels)
        decode_labels(compressed, dimensions, MAX_LABEL)  # refuses bad gzip, wrong size, labels > 5

        with session_scope(self._sessions) as session:
            edits = _edits(session, model_job.id)
            if latest_version_number(edits) != body.base_version:
                raise Conflict("another edit was saved meanwhile: reload the latest version and edit again")
            number = latest_version_number(edits) + 1
            job = Job(study_id=study.id, kind=JobKind.edit, sequence_series={"source": source_uid})
            session.add(job)
            session.flush()
            session.add(SegmentationVersion(
                study_id=study.id, model_job_id=model_job.id, job_id=job.id, version=number,
                base_version=body.base_version, source_series_instance_uid=source_uid,
                dimensions=list(dimensions), created_by=creator[:64], labels_gz=compressed,
            ))
            try:
                session.flush()
            except IntegrityError as exc:  # a concurrent edit took this version number
                raise Conflict("another edit was saved meanwhile: reload the latest version and edit again") from exc
            job_id = job.id
        try:
            self._queue.enqueue(job_id)
        except Exception:  # the rows are committed: the watcher re-enqueues the job later
            logger.warning("enqueue failed; the edit job stays queued and will be retried", extra={"job_id": job_id})
        return VersionCreated(version=number, job_id=job_id)
