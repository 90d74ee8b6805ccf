"""Uploads are validated and stored in worker processes, not in the process that answers the API.

Parsing and checking a few hundred DICOM files is CPU work in Python: run in the gateway's own
threads it holds the interpreter lock for seconds, and every other request of that process (the
worklist, job progress) waits for the lock between its database round trips. A small pool of
`upload_processes` spawned processes, niced by `upload_nice`, runs `StudyService.ingest_upload`
instead (the same code: validation, STOW-RS to the PACS, registration, the job) and hands the
outcome back. `upload_processes = 0` keeps the work in the gateway's thread pool (and so does a
test that passes its own job queue to `create_app`, which cannot travel to another process).

The files travel through a temporary file (`spool_upload`), not as call arguments: pickling 72 MB of
files through the pool's pipe took 0.2-0.3 s on the 2-core machine, writing and reading them back
from the page cache a tenth of that.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from glioscope_common.db import make_engine, make_session_factory
from glioscope_common.dicomweb.client import HttpDicomWeb
from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.dicomweb.protocol import DicomWeb
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.logs import configure_logging
from glioscope_gateway.jobs.queue import CeleryJobQueue, JobQueue
from glioscope_gateway.routing.rules import RuleSet
from glioscope_gateway.settings import GatewaySettings
from glioscope_gateway.studies.service import IngestOutcome, StudyService
from glioscope_gateway.studies.upload import UploadLimits

logger = logging.getLogger("glioscope.gateway.ingest")


def study_service(settings: GatewaySettings, sessions: sessionmaker[Session], dicomweb: DicomWeb, orthanc: OrthancRest,
                  queue: JobQueue) -> StudyService:
    return StudyService(
        sessions,
        dicomweb,
        orthanc,
        queue,
        UploadLimits(
            max_files=settings.max_files_per_upload,
            max_zip_members=settings.max_zip_members,
            max_zip_uncompressed_bytes=settings.max_zip_uncompressed_bytes,
            max_zip_ratio=settings.max_zip_ratio,
        ),
        requeue_after_s=settings.requeue_after_s,
        default_project=settings.default_project,
        rules=RuleSet(settings.processing_rules),
    )


# -- in the upload processes ------------------------------------------------------------------
_service: StudyService | None = None


def _start(settings: GatewaySettings, nice: int) -> None:
    global _service
    if nice:
        os.nice(nice)
    configure_logging(settings.log_json)
    _service = study_service(
        settings,
        make_session_factory(make_engine(settings.database_url)),
        HttpDicomWeb(settings.dicomweb_url, stow_concurrency=settings.stow_concurrency, auth=settings.orthanc_auth),
        OrthancRest(settings.orthanc_url, auth=settings.orthanc_auth),
        CeleryJobQueue(settings.broker_url, settings.job_queue),
    )


def _ready() -> int:
    return os.getpid()


def _ingest(files: Sequence[tuple[str, bytes]], project: str | None, visible: Sequence[str] | None) -> IngestOutcome:
    assert _service is not None
    return _service.ingest_upload(files, project, visible)


def _ingest_spooled(spool: str, index: Sequence[tuple[str, int]], project: str | None,
                    visible: Sequence[str] | None) -> IngestOutcome:
    return _ingest(read_spool(Path(spool), index), project, visible)


# -- the files' way between the processes --------------------------------------------------------
def spool_upload(files: Sequence[tuple[str, bytes]], directory: str | None = None) -> tuple[Path, list[tuple[str, int]]]:
    """Write the files one after another into a new private temporary file; returns it and the
    (name, size) index that `read_spool` needs. The caller removes the file."""
    fd, name = tempfile.mkstemp(prefix="glioscope-upload-", suffix=".spool", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for _, content in files:
                out.write(content)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, [(file_name, len(content)) for file_name, content in files]


def read_spool(path: Path, index: Sequence[tuple[str, int]]) -> list[tuple[str, bytes]]:
    files = []
    with path.open("rb") as spool:
        for name, size in index:
            content = spool.read(size)
            if len(content) != size:
                raise OSError(f"upload spool {path.name} is shorter than its index")
            files.append((name, content))
    return files


# -- in the gateway ---------------------------------------------------------------------------
class UploadIngest:
    def __init__(self, settings: GatewaySettings, studies: StudyService, processes: int, nice: int = 0) -> None:
        self._settings = settings
        self._studies = studies
        self._processes = processes
        self._nice = nice
        self._executor: ProcessPoolExecutor | None = None

    @property
    def in_processes(self) -> bool:
        return self._processes > 0

    def start(self) -> list[Future[int]]:
        """Spawn the processes now (they import the gateway's modules), so the first upload does not wait."""
        if self._processes <= 0 or self._executor is not None:
            return []
        self._executor = ProcessPoolExecutor(
            max_workers=self._processes,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process that runs threads
            initializer=_start,
            initargs=(self._settings, self._nice),
        )
        return [self._executor.submit(_ready) for _ in range(self._processes)]

    async def ready(self, timeout_s: float = 120.0) -> None:
        """Start the processes and wait until they are up (the app's startup: ready means ready to upload)."""
        started = self.start()
        if started:
            await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in started)), timeout_s)

    async def ingest(
        self, files: Sequence[tuple[str, bytes]], project: str | None, visible: Sequence[str] | None
    ) -> IngestOutcome:
        if self._processes <= 0:
            return await run_in_threadpool(self._studies.ingest_upload, files, project, visible)
        if self._executor is None:
            self.start()
        assert self._executor is not None
        executor = self._executor
        spool, index = await run_in_threadpool(spool_upload, files)
        try:
            try:
                future = executor.submit(_ingest_spooled, str(spool), index, project, visible)
            except BaseException:
                spool.unlink(missing_ok=True)
                raise
            # Removed when the upload process is done with it, also if this request is cancelled first.
            future.add_done_callback(lambda _: spool.unlink(missing_ok=True))
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            logger.error("an upload process died; starting new ones")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise UpstreamUnavailable("the upload could not be processed (a worker process stopped); send it again") from exc

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
