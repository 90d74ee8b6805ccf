"""Registering studies and creating jobs. No FastAPI or Celery here: routes and the watcher call it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import pydicom
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import read_scope, session_scope, utcnow
from glioscope_common.dicom.read import series_geometry
from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.dicomweb.protocol import DicomWeb, dicom_json_value
from glioscope_common.errors import Conflict, InvalidInput, NotFound, UnprocessableInput, UpstreamUnavailable
from glioscope_common.model_metadata import SEQUENCES
from glioscope_common.records.models import Job, JobState, Series, Study, StudyStatus
from glioscope_common.sequence_regions import refusal_reason
from glioscope_common.sequences import SeriesInfo, identify_sequences, missing_sequences
from glioscope_gateway.jobs.queue import JobQueue
from glioscope_gateway.routing.rules import RuleSet, StudyFacts
from glioscope_gateway.studies import repository
from glioscope_gateway.studies.upload import (
    Instance,
    UploadLimits,
    expand_upload,
    group_by_series,
    iter_instances,
    parse_instance,
    require_image_series,
)

logger = logging.getLogger("glioscope.gateway.studies")


@dataclass
class IngestOutcome:
    study: Study
    job: Job | None
    created: bool
    instances_received: int


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "")


def _visible(project: str, projects: Sequence[str] | None) -> bool:
    return projects is None or project in projects


def _study_from_dataset(ds: pydicom.Dataset, source: str, project: str) -> Study:
    return Study(
        project=project,
        study_instance_uid=str(ds.StudyInstanceUID),
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_sex=_text(ds, "PatientSex"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        source=source,
        status=StudyStatus.received,
    )


def check_series(datasets: Sequence[pydicom.Dataset], role: str) -> None:
    """The series builds a consistent volume and its pixels decode.

    The geometry of every slice is checked; pixels are decoded for the first slice only (truncated
    uncompressed pixel data was refused per file already): decoding the whole study here would
    double the upload time, and the worker decodes every slice anyway, failing the job clearly.
    """
    try:
        ordered, _ = series_geometry(datasets)
        ordered[0].pixel_array  # noqa: B018 - decodability (transfer syntax, codec, corrupt data)
    except UnprocessableInput as exc:
        raise UnprocessableInput(f"{role} series: {exc.detail}") from exc
    except Exception as exc:
        syntax = getattr(getattr(datasets[0], "file_meta", None), "TransferSyntaxUID", "unknown")
        raise UnprocessableInput(
            f"{role} series: its pixel data cannot be decoded (transfer syntax {syntax}: {type(exc).__name__})"
        ) from exc


def _series_number(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def describe_missing(missing: Sequence[str], found: Sequence[SeriesInfo]) -> str:
    """Why a study cannot be segmented: it lacks both T1c and FLAIR (sequence_regions); other gaps are segmented."""
    found_text = ", ".join(sorted({f"{s.modality} '{s.series_description or '?'}'" for s in found})) or "none"
    return (
        f"the study lacks {', '.join(missing)} (needs a T1c or a FLAIR; all of {', '.join(SEQUENCES)} for every "
        f"region); series found: {found_text}. Send the missing series or set the roles with "
        "PUT /api/studies/{uid}/sequences."
    )


def segmentable(roles: dict[str, str]) -> bool:
    """A study with these roles is queued: T1c or FLAIR present (the regions follow the sequences)."""
    return refusal_reason(role for role, uid in roles.items() if uid) is None


@dataclass
class ValidatedStudy:
    infos: dict[str, SeriesInfo]
    roles: dict[str, str]
    series_numbers: dict[str, int | None]


def validate_study(instances: Sequence[Instance]) -> ValidatedStudy:
    """The checks on a whole uploaded study: images present, a segmentable set of sequences found (T1c or
    FLAIR: glioscope_common.sequence_regions), their geometry sound."""
    require_image_series(instances)
    series_groups = group_by_series(instances)
    infos = {uid: SeriesInfo.from_dataset(group[0].dataset) for uid, group in series_groups.items()}
    for uid, info in infos.items():
        info.number_of_instances = len(series_groups[uid])
    roles = identify_sequences(list(infos.values()))
    if not segmentable(roles):
        raise UnprocessableInput(describe_missing(missing_sequences(roles), list(infos.values())))
    for role, series_uid in roles.items():
        check_series([i.dataset for i in series_groups[series_uid]], role)
    numbers = {uid: _series_number(group[0].dataset.get("SeriesNumber")) for uid, group in series_groups.items()}
    return ValidatedStudy(infos, roles, numbers)


class StudyService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        dicomweb: DicomWeb,
        orthanc: OrthancRest,
        queue: JobQueue,
        limits: UploadLimits,
        requeue_after_s: float = 300.0,
        default_project: str = "default",
        abandon_upload_after_s: float = 3600.0,
        rules: RuleSet | None = None,
    ) -> None:
        self.default_project = default_project
        self.rules = rules or RuleSet()
        self._sessions = sessions
        self._dicomweb = dicomweb
        self._orthanc = orthanc
        self._queue = queue
        self._limits = limits
        self._requeue_after = timedelta(seconds=requeue_after_s)
        self._abandon_upload_after = timedelta(seconds=abandon_upload_after_s)

    # -- upload --------------------------------------------------------------------------------
    def ingest_upload(
        self, files: Sequence[tuple[str, bytes]], project: str | None = None, visible: Sequence[str] | None = None
    ) -> IngestOutcome:
        """Validate and store in the PACS, then register in `project`; a refusal keeps nothing.

        The PACS stores the first batches while the later files are still being validated (the upload's
        two slow halves overlap); a refusal found on the way stops the storing and removes what was
        stored. `visible`: the uploader's projects (None: all); a study already registered elsewhere is
        a conflict."""
        project = project or self.default_project
        members = expand_upload(files, self._limits)
        first = parse_instance(*members[0])
        study_uid = first.study_instance_uid

        with session_scope(self._sessions) as session:
            existing = repository.get_study(session, study_uid)
            if existing is not None:
                if existing.status == StudyStatus.receiving:
                    raise Conflict("this study is being uploaded right now; retry in a moment")
                if not _visible(existing.project, visible):
                    raise Conflict("this study is already registered in a project you do not belong to")
                instances = list(iter_instances(members))  # still refuse a bad upload clearly
                return IngestOutcome(existing, existing.model_runs[-1] if existing.model_runs else None, False, len(instances))
            # Claim the study before anything reaches the PACS: a concurrent upload of the same study
            # gets 409 here (and cannot remove what this one stores), the watcher leaves it alone, and
            # a claim left by an upload that died is released by the watcher (release_abandoned_uploads).
            claim = _study_from_dataset(first.dataset, source="upload", project=project)
            claim.status = StudyStatus.receiving
            session.add(claim)
            try:
                session.flush()
            except IntegrityError as exc:
                raise Conflict("this study is being uploaded right now; retry in a moment") from exc

        instances: list[Instance] = []
        plan: list[ValidatedStudy] = []

        def validated() -> Iterator[bytes]:
            for instance in iter_instances(members):
                instances.append(instance)
                yield instance.raw
            plan.append(validate_study(instances))  # before the last batch is sent

        try:
            self._store_in_pacs(study_uid, validated())
        except BaseException:
            self._release_claim(study_uid)
            raise
        study_plan = plan[0]
        with session_scope(self._sessions) as session:
            study = repository.get_study(session, study_uid)
            assert study is not None and study.status == StudyStatus.receiving
            self._fill_series(study, study_plan.infos, study_plan.roles, study_plan.series_numbers)
            study.missing_sequences = missing_sequences(study_plan.roles)
            study.status = StudyStatus.ready
            job = Job(study=study, sequence_series=study_plan.roles)
            session.add(job)
            session.flush()
        self._queue_job(job.id)
        with session_scope(self._sessions) as session:
            stored = repository.get_study(session, study_uid)
            assert stored is not None
            return IngestOutcome(stored, stored.jobs[-1], True, len(instances))

    def _store_in_pacs(self, study_uid: str, instances: Iterable[bytes]) -> None:
        """STOW-RS `instances` (validated while they are sent); on any failure remove what was stored."""
        existed_before = self._orthanc.find_study(study_uid) is not None
        try:
            result = self._dicomweb.store_instances(instances, study_instance_uid=study_uid)
        except BaseException:
            self._forget_in_pacs(study_uid, existed_before)
            raise
        if result.failed_sop_instance_uids:
            self._forget_in_pacs(study_uid, existed_before)
            total = len(result.failed_sop_instance_uids) + len(result.stored_sop_instance_uids)
            raise UnprocessableInput(
                f"the PACS refused {len(result.failed_sop_instance_uids)} of {total} instances; nothing was kept"
            )

    def _release_claim(self, study_uid: str) -> None:
        with session_scope(self._sessions) as session:
            study = repository.get_study(session, study_uid)
            if study is not None and study.status == StudyStatus.receiving:
                session.delete(study)

    def release_abandoned_uploads(self) -> int:
        """Claims of uploads that died mid-way (an upload process killed) and are older than
        `abandon_upload_after`: registered from what reached the PACS, like a direct send (in the
        uploader's project; an incomplete study stays `incomplete`), or dropped when nothing did."""
        with session_scope(self._sessions) as session:
            abandoned = repository.abandoned_uploads(session, utcnow() - self._abandon_upload_after)
            uids = [study.study_instance_uid for study in abandoned]
            for study in abandoned:
                study.status = StudyStatus.received
        for study_uid in uids:
            try:
                self.register_from_pacs(study_uid, source="upload")
            except NotFound:
                with session_scope(self._sessions) as session:
                    study = repository.get_study(session, study_uid)
                    if study is not None and study.status == StudyStatus.received:
                        session.delete(study)
        return len(uids)

    def _forget_in_pacs(self, study_uid: str, existed_before: bool) -> None:
        if existed_before:
            return
        try:
            orthanc_id = self._orthanc.find_study(study_uid)
            if orthanc_id:
                self._orthanc.delete_study(orthanc_id)
        except UpstreamUnavailable:
            logger.warning("could not remove a half-stored study from the PACS")

    @staticmethod
    def _fill_series(
        study: Study, infos: dict[str, SeriesInfo], roles: dict[str, str], series_numbers: dict[str, int | None]
    ) -> None:
        role_of = {uid: role for role, uid in roles.items()}
        study.series = [
            Series(
                series_instance_uid=uid,
                series_number=series_numbers.get(uid),
                modality=info.modality,
                series_description=info.series_description,
                number_of_instances=info.number_of_instances,
                role=role_of.get(uid),
            )
            for uid, info in infos.items()
        ]

    def _queue_job(self, job_id: str) -> None:
        try:
            self._queue.enqueue(job_id)
        except Exception:  # the row is committed: the watcher re-enqueues it later
            logger.warning("enqueue failed; the job stays queued and will be retried", extra={"job_id": job_id})

    # -- studies that reached Orthanc directly (STOW-RS, C-STORE) -----------------------------
    def register_from_pacs(self, study_uid: str, source: str = "dicomweb") -> Study:
        """Called when Orthanc reports a stable study. Idempotent; completeness is checked here."""
        with session_scope(self._sessions) as session:
            existing = repository.get_study(session, study_uid)
            if existing is not None and existing.status in (StudyStatus.ready, StudyStatus.receiving):
                return existing  # registered, or an upload is storing it and registers it itself
            if existing is not None and existing.status == StudyStatus.not_processed and existing.jobs:
                return existing  # not processed by the rules, then queued by hand: leave it as it is
        series_json = self._dicomweb.search_series(study_uid)
        infos: dict[str, SeriesInfo] = {}
        numbers: dict[str, int | None] = {}
        for item in series_json:
            series_uid = str(dicom_json_value(item, "0020000E"))
            metadata = self._dicomweb.retrieve_series_metadata(study_uid, series_uid)
            if not metadata:
                continue
            infos[series_uid] = SeriesInfo.from_dicom_json(metadata[0], number_of_instances=len(metadata))
            numbers[series_uid] = _series_number(dicom_json_value(metadata[0], "00200011"))
        if not infos:
            raise NotFound("the study has no series in the PACS")
        first_series = next(iter(infos))
        first = pydicom.Dataset.from_json(self._dicomweb.retrieve_series_metadata(study_uid, first_series)[0])
        calling_aet = self._calling_aet(study_uid) if self.rules.needs_calling_aet else ""
        with session_scope(self._sessions) as session:
            study = repository.get_study(session, study_uid)
            if study is None:
                study = _study_from_dataset(first, source=source, project=self.default_project)
                session.add(study)
            roles = identify_sequences(list(infos.values()), study.sequence_overrides or None)
            study.series.clear()
            session.flush()
            self._fill_series(study, infos, roles, numbers)
            missing = missing_sequences(roles)
            study.missing_sequences = missing
            job: Job | None = None
            if not segmentable(roles):  # a subset with T1c or FLAIR is segmented with the regions it supports
                study.status = StudyStatus.incomplete
            else:
                decision = self.rules.decide(StudyFacts(
                    calling_aet=calling_aet, study_description=study.study_description, project=study.project,
                    modalities=tuple(i.modality for i in infos.values()),
                    series_descriptions=tuple(i.series_description for i in infos.values()),
                ))
                if decision.process:
                    study.status = StudyStatus.ready
                    study.processing_note = None
                    job = Job(study=study, sequence_series=roles)
                    session.add(job)
                else:  # stored and listed, not segmented (a user may still queue a job)
                    study.status = StudyStatus.not_processed
                    study.processing_note = decision.reason[:512]
            session.flush()
            job_id = job.id if job else None
        if job_id:
            self._queue_job(job_id)
        with session_scope(self._sessions) as session:
            stored = repository.get_study(session, study_uid)
            assert stored is not None
            return stored

    def _calling_aet(self, study_uid: str) -> str:
        """The AE title that sent the study by C-STORE (Orthanc's RemoteAET of its first instance); "" otherwise."""
        try:
            orthanc_id = self._orthanc.find_study(study_uid)
            if orthanc_id is None:
                return ""
            instances = self._orthanc._request("GET", f"/studies/{orthanc_id}/instances").json()
            if not instances:
                return ""
            response = self._orthanc._request("GET", f"/instances/{instances[0]['ID']}/metadata/RemoteAET")
            origin = self._orthanc._request("GET", f"/instances/{instances[0]['ID']}/metadata/Origin").text
            return response.text.strip() if origin.strip() == "DicomProtocol" else ""
        except NotFound:
            return ""

    # -- reads and actions -------------------------------------------------------------------
    def get(self, study_uid: str, projects: Sequence[str] | None = None) -> Study:
        """The study, if it is in one of `projects` (None: any); otherwise NotFound, as if it did not exist."""
        with read_scope(self._sessions) as session:
            study = repository.get_study(session, study_uid)
            if study is None or not _visible(study.project, projects):
                raise NotFound("no such study")
            return study

    def list(
        self,
        status: StudyStatus | None,
        search: str | None,
        limit: int,
        offset: int,
        projects: Sequence[str] | None = None,
        search_identifiers: bool = True,
    ) -> Sequence[Study]:
        with read_scope(self._sessions) as session:
            return repository.list_studies(session, status=status, search=search, limit=limit, offset=offset,
                                           projects=projects, search_identifiers=search_identifiers)

    def visible_study_uids(self, projects: Sequence[str]) -> set[str]:
        with session_scope(self._sessions) as session:
            return repository.study_uids_in(session, projects)

    def set_sequence_overrides(
        self, study_uid: str, overrides: dict[str, str], projects: Sequence[str] | None = None
    ) -> Study:
        unknown_roles = [role for role in overrides if role not in SEQUENCES]
        if unknown_roles:
            raise InvalidInput(f"unknown roles {unknown_roles}; use {list(SEQUENCES)}")
        with session_scope(self._sessions) as session:
            study = repository.get_study(session, study_uid)
            if study is None or not _visible(study.project, projects):
                raise NotFound("no such study")
            by_uid = repository.series_by_uid(study)
            unknown_series = [uid for uid in overrides.values() if uid not in by_uid]
            if unknown_series:
                raise InvalidInput("a series in the overrides does not belong to this study")
            study.sequence_overrides = dict(overrides)
            current = {s.role: s.series_instance_uid for s in study.series if s.role}
            roles = {**current, **overrides}
            for s in study.series:
                s.role = next((role for role, uid in roles.items() if uid == s.series_instance_uid), None)
            study.missing_sequences = missing_sequences(roles)
            study.status = StudyStatus.ready if segmentable(roles) else StudyStatus.incomplete
        return self.get(study_uid)

    def create_job(self, study_uid: str, projects: Sequence[str] | None = None, model_version: str = "") -> Job:
        """Queue a segmentation of the study with `model_version` of the model ("": the worker's default)."""
        with session_scope(self._sessions) as session:
            study = repository.get_study(session, study_uid)
            if study is None or not _visible(study.project, projects):
                raise NotFound("no such study")
            roles_now = {s.role: s.series_instance_uid for s in study.series if s.role}
            # not_processed (no processing rule matched): a user may still ask for a run.
            if study.status != StudyStatus.ready and not (
                study.status == StudyStatus.not_processed and segmentable(roles_now)
            ):
                raise UnprocessableInput(describe_missing(study.missing_sequences, []))
            active = [j for j in study.model_runs if j.state in (JobState.queued, JobState.running)]
            if active:
                raise Conflict("a job for this study is already queued or running")
            roles = {s.role: s.series_instance_uid for s in study.series if s.role}
            job = Job(study=study, sequence_series=roles, model_version=model_version)
            session.add(job)
            session.flush()
            job_id = job.id
        self._queue_job(job_id)
        return self.get_job(job_id)

    def get_job(self, job_id: str, projects: Sequence[str] | None = None) -> Job:
        """The job (its `study` loaded), if its study is in one of `projects` (None: any)."""
        with read_scope(self._sessions) as session:
            job = repository.get_job(session, job_id)
            if job is None or not _visible(job.study.project, projects):
                raise NotFound("no such job")
            return job

    def requeue_stale_jobs(self) -> int:
        with session_scope(self._sessions) as session:
            stale = repository.stale_jobs(session, utcnow() - self._requeue_after)
            ids = [job.id for job in stale]
            for job in stale:
                job.state = JobState.queued
                job.stage = "requeued"
                job.updated_at = utcnow()
        for job_id in ids:
            self._queue_job(job_id)
        return len(ids)
