"""One segmentation job, from the PACS to DICOM-SEG, NIfTI, measurements and a drafted report.

Idempotent by construction: the SEG's UIDs derive from the job ID (Orthanc overwrites the same
instance), NIfTI files are PUT to fixed paths, and the reporting service returns the existing report
for a (study, job) pair. A worker killed mid-job is therefore safe to run again (acks_late).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from isal import igzip
from pydicom.uid import generate_uid

from glioscope_common.dicom.read import read_series
from glioscope_common.dicomweb.protocol import DicomWeb
from glioscope_common.errors import NotFound, UnprocessableInput
from glioscope_common.inference_backend import InferenceBackend
from glioscope_common.model_metadata import ModelMetadata
from glioscope_common.records.models import JobState
from glioscope_common.sequence_regions import plan_sequences
from glioscope_common.volume import Volume
from glioscope_inference.dicom_seg import build_segmentation
from glioscope_inference.dicom_seg import warm_up as warm_up_highdicom
from glioscope_inference.brain_extraction import BrainExtractor
from glioscope_inference.pipeline import SegmentationResult, segment_study
from glioscope_inference.segmentation.clients import NiftiClient, ReportingClient
from glioscope_inference.segmentation.repository import JobRepository
from glioscope_inference.slice_reference import with_measured_slice

logger = logging.getLogger("glioscope.inference.segmentation")

BIDS_SUFFIX = {"T1": "T1w", "T1c": "ce-gadolinium_T1w", "T2": "T2w", "FLAIR": "FLAIR"}
SEG_SERIES_NUMBER = 900


def bids_label(value: str) -> str:
    """A stable, PHI-free BIDS label (alphanumeric) derived from an identifier."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


BACKGROUND_NICE_STEP = 10


def _lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: setpriority on the thread id); no-op elsewhere."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE_STEP))
    except (AttributeError, OSError):
        pass


def bids_anat(study_uid: str, first: pydicom.Dataset) -> tuple[str, str]:
    """The BIDS folder `sub-<s>/ses-<t>/anat` of a study and the file name stem `sub-<s>_ses-<t>`."""
    subject = bids_label(str(first.get("PatientID", "")) or study_uid)
    session = bids_label(study_uid)
    return f"sub-{subject}/ses-{session}/anat", f"sub-{subject}_ses-{session}"


def nifti_dtype(data: np.ndarray) -> type:
    """int16 when the values are integers that fit (as scanners store MR), else float32: half the bytes."""
    if data.dtype == np.uint8:
        return np.uint8
    if data.size and float(data.min()) >= -32768 and float(data.max()) <= 32767 and np.array_equal(data, np.round(data)):
        return np.int16
    return np.float32


def nifti_bytes(volume: Volume, dtype: np.dtype | type) -> bytes:  # type: ignore[type-arg]
    image = nib.Nifti1Image(np.asarray(volume.data, dtype=dtype), volume.affine)
    image.set_qform(volume.affine, code=1)
    image.set_sform(volume.affine, code=1)
    # ISA-L's gzip: the same format and size as zlib's level 1 for about a tenth of the CPU, which
    # the model run shares while the source images are written
    return igzip.compress(image.to_bytes(), compresslevel=1)


def brain_mask_file(anat: str, stem: str, result: SegmentationResult) -> tuple[str, Volume] | None:
    """The BIDS derivative of the brain mask (uint8 0/1 on the T1c grid and affine) when brain extraction ran."""
    if result.brain_mask is None:
        return None
    path = f"derivatives/glioscope/{anat}/{stem}_space-orig_desc-brain_mask.nii.gz"
    return path, Volume(np.asarray(result.brain_mask, dtype=np.uint8), result.reference.affine)


# (start, width) of each pipeline stage on the job's progress bar: fetch before 0.15, outputs from 0.9
PIPELINE_PROGRESS = {"coregister": (0.15, 0.05), "resample": (0.2, 0.05), "normalise": (0.25, 0.05),
                     "inference": (0.3, 0.55), "postprocess": (0.85, 0.02), "locate": (0.87, 0.01),
                     "measure": (0.88, 0.005), "key_images": (0.885, 0.015)}


def job_progress(stage: str, fraction: float) -> float:
    """The job's progress for `fraction` of a pipeline stage; never goes back from stage to stage."""
    start, width = PIPELINE_PROGRESS.get(stage, (0.85, 0.0))
    return round(start + width * min(1.0, max(0.0, fraction)), 4)


def source_series(role: str, datasets: list[pydicom.Dataset]) -> dict[str, Any]:
    """A `SourceSeries` of the report payload: one series the model read and all its instances."""
    first = datasets[0]
    number = first.get("SeriesNumber")
    return {
        "role": role,
        "series_instance_uid": str(first.SeriesInstanceUID),
        "sop_class_uid": str(first.SOPClassUID),
        "sop_instance_uids": [str(ds.SOPInstanceUID) for ds in datasets],
        "series_number": int(number) if number not in (None, "") else None,
        "series_description": str(first.get("SeriesDescription", "") or ""),
    }


@dataclass
class Outputs:
    seg_series_instance_uid: str
    seg_sop_instance_uid: str
    nifti_paths: dict[str, str] = field(default_factory=dict)
    report_id: str | None = None


ProgressSink = Callable[[str, str, float], None]  # (job_id, stage, fraction)


class SegmentationService:
    def __init__(
        self,
        jobs: JobRepository,
        dicomweb: DicomWeb,
        nifti: NiftiClient,
        reporting: ReportingClient,
        backend_factory: Callable[[], InferenceBackend],
        metadata: ModelMetadata,
        publish: ProgressSink | None = None,
        brain_extractor_factory: Callable[[], BrainExtractor | None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._dicomweb = dicomweb
        self._nifti = nifti
        self._reporting = reporting
        self._backend_factory = backend_factory
        self._metadata = metadata
        self._publish = publish
        self._brain_extractor_factory = brain_extractor_factory or (lambda: None)

    @property
    def metadata(self) -> ModelMetadata:
        """The model version this service runs."""
        return self._metadata

    def _progress(self, job_id: str, stage: str, fraction: float) -> None:
        self._jobs.progress(job_id, stage, fraction)
        if self._publish:
            try:
                self._publish(job_id, stage, fraction)
            except Exception:  # Redis carries only what can be lost
                logger.debug("progress publish failed", exc_info=True)

    def warm_up(self) -> None:
        """One-time costs paid at worker start instead of by the first job: the inference backend
        (an onnxruntime session, or the Triton client) and highdicom's standard tables."""
        self._backend_factory()
        self._brain_extractor_factory()
        warm_up_highdicom(self._metadata)

    def run(self, job_id: str) -> str:
        """Run the job; returns its final state. Upstream errors propagate (the task retries)."""
        job = self._jobs.load(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        if job.state in (JobState.succeeded, JobState.failed):
            return job.state.value
        if not self._jobs.claim(job_id):
            return "skipped"
        study_uid = job.study.study_instance_uid
        timings: dict[str, float] = {}
        # Outputs are written by `pool`. The source images' NIfTI copies do not depend on the model:
        # one background thread at a lower CPU priority stores them while the model runs, on the
        # cycles the pipeline leaves idle. Both pools are waited for whatever happens.
        pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="outputs")
        background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sources", initializer=_lower_thread_priority)
        try:
            started = time.perf_counter()
            sources, volumes = self._fetch(study_uid, job.sequence_series)
            timings["fetch"] = time.perf_counter() - started
            reference = plan_sequences(volumes).reference  # T1c, or FLAIR without one: the grid of the outputs
            files = self._nifti_files(study_uid, sources[reference][0], volumes)
            stored_sources = [background.submit(self._put_nifti, path, volume) for path, volume in files.values()]

            def on_progress(stage: str, fraction: float) -> None:
                self._progress(job_id, stage, job_progress(stage, fraction))

            backend = self._backend_factory()
            result = segment_study(
                volumes, self._metadata, backend, progress=on_progress,
                batch_size=getattr(backend, "preferred_batch_size", 1),
                requests_in_flight=getattr(backend, "requests_in_flight", 1),
                brain_extractor=self._brain_extractor_factory(),
            )
            timings.update(result.timings_s)
            result.measurements = with_measured_slice(result.measurements, sources[reference], volumes[reference])

            started = time.perf_counter()
            self._progress(job_id, "outputs", 0.9)
            outputs = self._write_outputs(pool, stored_sources, job_id, study_uid, sources, files, result)
            timings["outputs"] = time.perf_counter() - started
        except UnprocessableInput as exc:
            self._jobs.fail(job_id, exc.detail, timings)
            return JobState.failed.value
        finally:
            background.shutdown(wait=True)
            pool.shutdown(wait=True)
        self._jobs.succeed(
            job_id,
            timings_s=timings,
            measurements=result.measurements.model_dump(mode="json"),
            seg_series_instance_uid=outputs.seg_series_instance_uid,
            seg_sop_instance_uid=outputs.seg_sop_instance_uid,
            nifti_paths=outputs.nifti_paths,
            report_id=outputs.report_id,
            model_name=self._metadata.name,
            model_version=self._metadata.version,
        )
        self._progress(job_id, "done", 1.0)
        return JobState.succeeded.value

    def _fetch(
        self, study_uid: str, roles: Mapping[str, str]
    ) -> tuple[dict[str, list[pydicom.Dataset]], dict[str, Volume]]:
        """The four series by WADO-RS and their volumes. One request per series, all in flight at once:
        the PACS reads the next series while this process decodes the previous one."""
        channels = [c for c in self._metadata.channels if roles.get(c)]  # a subset: sequence_regions decides
        plan_sequences(channels)  # refuses a study without T1c and FLAIR

        def fetch(role: str) -> tuple[list[pydicom.Dataset], Volume]:
            datasets = self._dicomweb.retrieve_series(study_uid, roles[role])
            if not datasets:
                raise UnprocessableInput(f"the {role} series is no longer in the PACS")
            return datasets, read_series(datasets)

        with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="fetch") as pool:
            fetched = dict(zip(channels, pool.map(fetch, channels)))
        return {role: d for role, (d, _) in fetched.items()}, {role: v for role, (_, v) in fetched.items()}

    @staticmethod
    def _nifti_files(study_uid: str, first: pydicom.Dataset, volumes: Mapping[str, Volume]) -> dict[str, tuple[str, Volume]]:
        """BIDS paths of the source images: role -> (path, volume)."""
        anat, stem = bids_anat(study_uid, first)
        return {role: (f"{anat}/{stem}_{BIDS_SUFFIX[role]}.nii.gz", volume) for role, volume in volumes.items()}

    def _put_nifti(self, path: str, volume: Volume) -> None:
        self._nifti.put_file(path, nifti_bytes(volume, nifti_dtype(volume.data)))

    def _write_outputs(
        self,
        pool: ThreadPoolExecutor,
        stored_sources: list[Future[None]],
        job_id: str,
        study_uid: str,
        sources: Mapping[str, list[pydicom.Dataset]],
        files: Mapping[str, tuple[str, Volume]],
        result: SegmentationResult,
    ) -> Outputs:
        """SEG to the PACS, the mask NIfTI and the report draft, concurrently; then waits for the
        source images' NIfTI files (`stored_sources`, started before the model ran)."""
        reference = sources[result.plan.reference]
        first = reference[0]
        outputs = Outputs(
            generate_uid(entropy_srcs=[job_id, "seg-series"]), generate_uid(entropy_srcs=[job_id, "seg-instance"])
        )
        anat, stem = bids_anat(study_uid, first)
        mask_path = f"derivatives/glioscope/{anat}/{stem}_space-orig_dseg.nii.gz"
        mask = Volume(result.label_map.astype(np.uint8), result.reference.affine)

        def store_segmentation() -> None:
            segmentation = build_segmentation(
                result.label_map, reference, result.delivered_metadata,
                series_number=SEG_SERIES_NUMBER,
                series_instance_uid=outputs.seg_series_instance_uid,
                sop_instance_uid=outputs.seg_sop_instance_uid,
            )
            buffer = io.BytesIO()
            segmentation.save_as(buffer)
            store = self._dicomweb.store_instances([buffer.getvalue()], study_instance_uid=study_uid)
            if store.failed_sop_instance_uids:
                raise UnprocessableInput("the PACS refused the DICOM-SEG")

        def draft_report() -> str:
            payload = self._report_payload(job_id, study_uid, sources, result, outputs)
            return str(self._reporting.create_report(payload, result.key_images)["id"])

        pending = [pool.submit(store_segmentation), pool.submit(self._put_nifti, mask_path, mask)]
        brain = brain_mask_file(anat, stem, result)
        if brain is not None:
            pending.append(pool.submit(self._put_nifti, *brain))
        report = pool.submit(draft_report)
        for future in [*pending, *stored_sources]:
            future.result()  # re-raises the first failure (the job is retried or fails as a whole)
        outputs.report_id = report.result()
        outputs.nifti_paths = {role: path for role, (path, _) in files.items()} | {"mask": mask_path}
        if brain is not None:
            outputs.nifti_paths["brain_mask"] = brain[0]
        return outputs

    def _report_payload(
        self,
        job_id: str,
        study_uid: str,
        sources: Mapping[str, list[pydicom.Dataset]],
        result: SegmentationResult,
        outputs: Outputs,
    ) -> dict[str, Any]:
        """The reporting service's CreateReport: the patient and study attributes of the SEG's source series
        (the first T1c instance) as they are, the measurements, the model, and the `segmentation` reference the
        SR cites: the SEG (version 1) and every instance of each series the model read, the SEG's grid first."""
        first = sources[result.plan.reference][0]

        def text(keyword: str) -> str:
            return str(first.get(keyword, "") or "")

        return {
            "study_instance_uid": study_uid,
            "job_id": job_id,
            "patient": {
                "patient_id": text("PatientID"),
                "patient_name": text("PatientName"),
                "patient_sex": text("PatientSex"),
                "patient_birth_date": text("PatientBirthDate"),
            },
            "study": {
                "study_date": text("StudyDate"),
                "study_time": text("StudyTime"),
                "study_id": text("StudyID"),
                "study_description": text("StudyDescription"),
                "accession_number": text("AccessionNumber"),
                "referring_physician_name": text("ReferringPhysicianName"),
            },
            "measurements": result.measurements.model_dump(mode="json"),
            "model": {
                "name": self._metadata.name,
                "version": self._metadata.version,
                "intended_use": self._metadata.intended_use,
            },
            "segmentation": {
                "version": 1,
                "series_instance_uid": outputs.seg_series_instance_uid,
                "sop_instance_uid": outputs.seg_sop_instance_uid,
                "series_number": SEG_SERIES_NUMBER,
                "source_series": [source_series(role, sources[role])
                                  for role in sorted(sources, key=lambda r: r != result.plan.reference)],
            },
        }
