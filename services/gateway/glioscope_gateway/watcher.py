"""Gives a job to studies that reach Orthanc without the gateway (STOW-RS to Orthanc, C-STORE).

Orthanc's change feed (`GET /changes`) is read from a cursor kept in the database, so a gateway
restart misses nothing; a "StableStudy" change (no new instance for Orthanc's StableAge) registers
the study, checks it has the four sequences, and queues a job. The same loop re-enqueues jobs left
queued too long (a message the broker lost). Every gateway replica may run it (GLIOSCOPE_ORTHANC_WATCHER):
only the leader (glioscope_gateway.leader) works; a new leader starts a cycle as soon as it is elected and
continues from the stored cursor, so studies that arrived during a hand-over are picked up.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.dicomweb.orthanc import OrthancRest
from glioscope_common.errors import GlioscopeError, NotFound
from glioscope_gateway.change_cursor import read_cursor, save_cursor
from glioscope_gateway.studies.service import StudyService

logger = logging.getLogger("glioscope.gateway.watcher")
CURSOR = "orthanc-changes"


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...


class _Alone:
    is_leader = True


class OrthancWatcher:
    def __init__(
        self, sessions: sessionmaker[Session], orthanc: OrthancRest, studies: StudyService, interval_s: float,
        leader: Leadership | None = None,
    ) -> None:
        self._sessions = sessions
        self._orthanc = orthanc
        self._studies = studies
        self._interval_s = interval_s
        self._leader: Leadership = leader or _Alone()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.cycles = 0  # cycles run as the leader (tests, logs)

    def wake(self) -> None:
        """Run the next cycle now (called when this replica is elected)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="orthanc-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._leader.is_leader:  # followers only wait; checked before every cycle
                try:
                    self.poll_once()
                    self._studies.requeue_stale_jobs()
                    self._studies.release_abandoned_uploads()
                    self.cycles += 1
                except Exception:
                    logger.warning("watcher cycle failed; retrying", exc_info=True)
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def _cursor(self) -> int:
        return read_cursor(self._sessions, CURSOR) or 0

    def _save_cursor(self, last: int) -> None:
        save_cursor(self._sessions, CURSOR, last)

    def poll_once(self) -> int:
        """Handle all pending changes; returns how many stable studies were handled."""
        handled = 0
        since = self._cursor()
        while True:
            changes, last, done = self._orthanc.changes(since)
            for change in changes:
                if change.get("ChangeType") != "StableStudy":
                    continue
                try:
                    study = self._orthanc.study(change["ID"])
                except NotFound:
                    continue  # deleted since (e.g. a de-identified export copy)
                if study.get("AnonymizedFrom") or study.get("ModifiedFrom"):
                    continue  # a copy Orthanc made for a de-identified export: not a clinical study
                study_uid = str(study["MainDicomTags"]["StudyInstanceUID"])
                try:
                    self._studies.register_from_pacs(study_uid)
                    handled += 1
                except GlioscopeError as exc:
                    logger.warning("a stable study could not be registered: %s", exc.detail)
            if last != since:
                self._save_cursor(last)
                since = last
            if done or not changes:
                return handled
