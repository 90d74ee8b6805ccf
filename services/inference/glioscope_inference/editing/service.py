"""One edit job: a clinician's corrected label map -> a new DICOM-SEG series in the PACS, the mask
NIfTI in the NIfTI service and measurements recomputed with the model path's `measure_delivered`
(located with the model run's registration to the atlas, the model run's input warnings kept).

The gateway has validated the labels and stored them with the version row (one transaction with
the job row), so everything the job needs is in the database and the PACS: a worker that dies
mid-job loses nothing (acks_late) and the re-run writes the same outputs again — the SEG's UIDs
derive from the job ID, its SeriesNumber is looked up again, the NIfTI path is fixed.
"""

from __future__ import annotations

import io
import logging
import time

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from glioscope_common.dicom.read import read_series
from glioscope_common.dicomweb.protocol import DicomWeb, dicom_json_value
from glioscope_common.errors import NotFound, UnprocessableInput
from glioscope_common.labelmap import decode_labels
from glioscope_common.measurements import WHOLE_TUMOUR_LABEL, AtlasRegistration, Measurements
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.records.models import JobState
from glioscope_common.records.segmentations import SegmentationVersion
from glioscope_common.sequence_regions import SequencePlan, delivered_labels, plan_sequences, restrict_labels
from glioscope_common.sequences import ROLES
from glioscope_common.volume import Volume
from glioscope_inference.dicom_seg import build_segmentation
from glioscope_inference.editing.repository import VersionRepository
from glioscope_inference.keyimages import render_key_images
from glioscope_inference.measure import measure_delivered
from glioscope_inference.preprocess import reference_grid, resample
from glioscope_inference.slice_reference import with_measured_slice
from glioscope_inference.segmentation.clients import NiftiClient, ReportingClient
from glioscope_inference.segmentation.repository import JobRepository
from glioscope_inference.segmentation.service import (
    SEG_SERIES_NUMBER,
    ProgressSink,
    SegmentationService,
    bids_anat,
    nifti_bytes,
    source_series,
)

logger = logging.getLogger("glioscope.inference.editing")


def seg_series_description(version: int) -> str:
    return f"Glioscope tumour segmentation v{version} (edited)"


def edited_mask_path(first: pydicom.Dataset, study_uid: str, version: int) -> str:
    """The BIDS derivative beside the model's mask (`..._space-orig_dseg.nii.gz`), the version in `desc`."""
    anat, stem = bids_anat(study_uid, first)
    return f"derivatives/glioscope/{anat}/{stem}_space-orig_desc-v{version}edited_dseg.nii.gz"


def edited_key_images(reference: Volume, labels: np.ndarray, metadata: ModelMetadata) -> dict[str, bytes]:
    """The key images of an edited mask: the source series and the labels on the model's axis-aligned grid,
    drawn as the model run draws them."""
    grid_affine, grid_shape = reference_grid(reference, metadata.spacing_mm)
    background = resample(reference, grid_affine, grid_shape, order=1)
    on_grid = resample(Volume(labels, reference.affine), grid_affine, grid_shape, order=0).astype(np.uint8)
    return render_key_images(background, on_grid, grid_affine, metadata)


def model_run_context(
    measurements: dict[str, object] | None,
) -> tuple[AtlasRegistration | None, list[str], SequencePlan]:
    """The model run's registration to the atlas, input warnings and sequences: an edited mask lies on the
    same source images, so it is located with the same registration, carries the same input warnings and
    reports the same regions."""
    if not measurements:
        return None, [], plan_sequences(ROLES)
    prior = Measurements.model_validate(measurements)
    return prior.atlas_registration, list(prior.input_warnings), plan_sequences(prior.sequences_used)


class EditService(SegmentationService):
    """Shares the segmentation service's clients and progress reporting; runs no model."""

    def __init__(
        self,
        jobs: JobRepository,
        versions: VersionRepository,
        dicomweb: DicomWeb,
        nifti: NiftiClient,
        metadata: ModelMetadata,
        publish: ProgressSink | None = None,
        reporting: ReportingClient | None = None,
    ) -> None:
        super().__init__(jobs, dicomweb, nifti, reporting, _no_backend, metadata, publish)  # type: ignore[arg-type]
        self._versions = versions

    def model_version_of(self, job_id: str) -> str:
        """The model version whose mask the edit job changes ("" when unknown): its SEG names that algorithm."""
        version = self._versions.for_job(job_id)
        model_job = self._jobs.load(version.model_job_id) if version is not None else None
        return model_job.model_version if model_job is not None else ""

    def run(self, job_id: str) -> str:
        """Run the edit job; returns its final state. Upstream errors propagate (the task retries)."""
        job, version = self._jobs.load(job_id), self._versions.for_job(job_id)
        if job is None or version is None:
            raise NotFound(f"no edit job {job_id} with a segmentation version")
        if job.state in (JobState.succeeded, JobState.failed) or not self._jobs.claim(job_id):
            return job.state.value if job.state in (JobState.succeeded, JobState.failed) else "skipped"
        study_uid = job.study.study_instance_uid
        timings: dict[str, float] = {}
        try:
            started = time.perf_counter()
            datasets = self._dicomweb.retrieve_series(study_uid, version.source_series_instance_uid)
            if not datasets:
                raise UnprocessableInput("the source series is no longer in the PACS")
            reference = read_series(datasets)
            timings["fetch"] = time.perf_counter() - started

            started = time.perf_counter()
            self._progress(job_id, "measure", 0.4)
            if version.labels_gz is None:
                raise UnprocessableInput("the edited labels are no longer stored; save the edit again")
            max_label = max(WHOLE_TUMOUR_LABEL, *(info.value for info in self._metadata.labels))
            labels = decode_labels(version.labels_gz, version.dimensions, max_label)
            if labels.shape != reference.shape:
                raise UnprocessableInput(
                    f"the labels' grid {labels.shape} does not match the source series {reference.shape}"
                )
            model_job = self._jobs.load(version.model_job_id)
            registration, warnings, plan = model_run_context(model_job.measurements if model_job else None)
            labels = restrict_labels(labels, plan)  # an edit claims no more than the model run's sequences allow
            delivered = self._metadata.model_copy(update={"labels": delivered_labels(self._metadata.labels, plan)})
            unknown = sorted({int(v) for v in np.unique(labels)} - {0} - {info.value for info in delivered.labels})
            if unknown:
                raise UnprocessableInput(f"the edited labels hold values {unknown} that this segmentation does not define")
            measurements = measure_delivered(
                labels, reference, delivered, registration=registration, input_warnings=warnings, plan=plan
            )
            measurements = with_measured_slice(measurements, datasets, reference)
            timings["measure"] = time.perf_counter() - started

            started = time.perf_counter()
            self._progress(job_id, "outputs", 0.6)
            outputs = self._store(job_id, study_uid, version, datasets, reference, labels, delivered)
            self._refresh_report(version, outputs, datasets, reference, labels, measurements, delivered, plan.reference)
            timings["outputs"] = time.perf_counter() - started
        except UnprocessableInput as exc:
            self._jobs.fail(job_id, exc.detail, timings)
            return JobState.failed.value

        counts = np.bincount(labels.ravel(), minlength=max_label + 1)
        result = measurements.model_dump(mode="json")
        self._versions.record(
            version.id,
            voxel_counts={str(info.value): int(counts[info.value]) for info in delivered.labels},
            measurements=result,
            **outputs,
        )
        self._jobs.succeed(
            job_id,
            timings_s=timings,
            measurements=result,
            seg_series_instance_uid=outputs["seg_series_instance_uid"],
            seg_sop_instance_uid=outputs["seg_sop_instance_uid"],
            nifti_paths={"mask": outputs["nifti_path"]},
            model_name=self._metadata.name,
            model_version=self._metadata.version,
        )
        self._versions.clear_labels(version.id)
        self._progress(job_id, "done", 1.0)
        return JobState.succeeded.value

    def _refresh_report(
        self,
        version: SegmentationVersion,
        outputs: dict[str, object],
        datasets: list[pydicom.Dataset],
        reference: Volume,
        labels: np.ndarray,
        measurements: Measurements,
        delivered: ModelMetadata,
        reference_role: str,
    ) -> None:
        """The model run's report follows this version: its measurements, key images and redrafted text
        (reporting's refresh, idempotent per version). Before the job succeeds, so a retry does it again; a
        report that cannot follow (signed: 409) is logged, the new version stands."""
        model_job = self._jobs.load(version.model_job_id)
        if self._reporting is None or model_job is None or not model_job.report_id:
            return
        payload = {
            "segmentation": {
                "version": version.version,
                "series_instance_uid": outputs["seg_series_instance_uid"],
                "sop_instance_uid": outputs["seg_sop_instance_uid"],
                "series_number": outputs["seg_series_number"],
                "source_series": [source_series(reference_role, datasets)],
            },
            "measurements": measurements.model_dump(mode="json"),
        }
        try:
            self._reporting.refresh_segmentation(model_job.report_id, payload, edited_key_images(reference, labels, delivered))
        except UnprocessableInput as exc:
            logger.warning("the report did not follow segmentation version %s: %s", version.version, exc.detail)

    def _series_number(self, study_uid: str, series_uid: str) -> int:
        """The next SeriesNumber in the study; on a re-run the number the series already has."""
        numbers: dict[str, int] = {}
        for item in self._dicomweb.search_series(study_uid):
            try:
                number = int(dicom_json_value(item, "00200011"))  # type: ignore[arg-type]
                numbers[str(dicom_json_value(item, "0020000E"))] = number
            except (TypeError, ValueError):
                continue
        if series_uid in numbers:
            return numbers[series_uid]
        return max([SEG_SERIES_NUMBER, *numbers.values()]) + 1

    def _store(
        self,
        job_id: str,
        study_uid: str,
        version: SegmentationVersion,
        datasets: list[pydicom.Dataset],
        reference: Volume,
        labels: np.ndarray,
        delivered: ModelMetadata,
    ) -> dict[str, object]:
        series_uid = generate_uid(entropy_srcs=[job_id, "seg-series"])
        sop_uid = generate_uid(entropy_srcs=[job_id, "seg-instance"])
        series_number = self._series_number(study_uid, series_uid)
        segmentation = build_segmentation(
            labels, datasets, delivered,
            series_number=series_number,
            series_description=seg_series_description(version.version),
            content_creator=version.created_by,
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
            algorithm_type="SEMIAUTOMATIC",
        )
        buffer = io.BytesIO()
        segmentation.save_as(buffer)
        store = self._dicomweb.store_instances([buffer.getvalue()], study_instance_uid=study_uid)
        if store.failed_sop_instance_uids:
            raise UnprocessableInput("the PACS refused the edited DICOM-SEG")
        path = edited_mask_path(datasets[0], study_uid, version.version)
        self._nifti.put_file(path, nifti_bytes(Volume(labels, reference.affine), np.uint8))
        return {
            "seg_series_instance_uid": series_uid,
            "seg_sop_instance_uid": sop_uid,
            "seg_series_number": series_number,
            "nifti_path": path,
        }


def _no_backend() -> None:
    raise RuntimeError("an edit job runs no model")
