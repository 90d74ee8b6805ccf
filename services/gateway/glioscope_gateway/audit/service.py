"""Writing and reading the audit log. Only inserts and selects exist here: no update or delete path."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope
from glioscope_common.records.access import AuditAction, AuditEvent

logger = logging.getLogger("glioscope.gateway.audit")

CSV_COLUMNS = ("id", "at", "actor", "role", "action", "study_instance_uid", "outcome", "request_id", "client_ip")
# A cell a spreadsheet would read as a formula (OWASP "CSV injection"): = + - @ tab or CR first, also
# after leading whitespace. Such cells get a leading apostrophe, which spreadsheets show as text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START) or text.lstrip().startswith(FORMULA_START):
        return "'" + text
    return text


@dataclass
class AuditNote:
    """What a route is about to do; the audit middleware writes it with the response's outcome."""

    action: AuditAction
    study_instance_uid: str | None = None
    # The DICOMweb proxy sees hundreds of requests per viewed study: record one per caller, study and
    # action every `dedupe_s` seconds.
    dedupe: bool = False
    actor: str | None = None  # sign-in: the username tried (no principal yet)
    role: str | None = None


def outcome_of(status_code: int) -> str:
    if status_code < 400:
        return "ok"
    if status_code in (401, 403):
        return "denied"
    if status_code == 404:
        return "not_found"
    if status_code == 429:
        return "limited"
    if status_code < 500:
        return "refused"
    return "failed"


class AuditLog:
    """Appends audit events. Concurrent requests' events are written together (group commit): one
    writer thread inserts whatever is waiting in one transaction, and each request waits until its
    own event is committed, so no response leaves before its access is on record."""

    def __init__(self, sessions: sessionmaker[Session], dedupe_s: float = 300.0, max_batch: int = 500) -> None:
        self._sessions = sessions
        self._dedupe_s = dedupe_s
        self._max_batch = max_batch
        self._recent: dict[tuple[str, str, str | None, str], float] = {}
        self._lock = threading.Lock()
        self._pending: list[tuple[AuditEvent, Future[None]]] = []
        self._wake = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False

    def record(self, **fields: object) -> None:
        """Write one event (keyword arguments as `event`); returns once it is committed."""
        future = self.submit(**fields)  # type: ignore[arg-type]
        if future is not None:
            future.result()

    async def record_async(self, **fields: object) -> None:
        future = self.submit(**fields)  # type: ignore[arg-type]
        if future is not None:
            await asyncio.wrap_future(future)

    def submit(
        self,
        *,
        actor: str,
        role: str,
        action: AuditAction,
        study_instance_uid: str | None,
        outcome: str,
        request_id: str | None,
        client_ip: str | None,
        dedupe: bool = False,
    ) -> Future[None] | None:
        """Queue one event for the writer; None when `dedupe` finds the same one recorded recently."""
        if dedupe:
            key = (actor, action.value, study_instance_uid, outcome)
            now = time.monotonic()
            with self._lock:
                if now - self._recent.get(key, float("-inf")) < self._dedupe_s:
                    return None
                if len(self._recent) > 10_000:
                    self._recent.clear()
                self._recent[key] = now
        event = AuditEvent(actor=actor[:64], role=role[:16], action=action,
                           study_instance_uid=(study_instance_uid or None) and study_instance_uid[:64],
                           outcome=outcome, request_id=(request_id or "")[:64] or None,
                           client_ip=(client_ip or "")[:64] or None)
        future: Future[None] = Future()
        with self._wake:
            self._pending.append((event, future))
            if self._writer is None:  # the writer clears it, under this lock, when it stops
                self._closing = False
                self._writer = threading.Thread(target=self._write_loop, name="audit-writer", daemon=True)
                self._writer.start()
            self._wake.notify()
        return future

    def _write_loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if not self._pending:
                    self._writer = None  # a later submit starts a new writer
                    return
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                with session_scope(self._sessions) as session:
                    session.add_all([event for event, _ in batch])
            except BaseException as exc:
                logger.exception("audit write failed (%d events)", len(batch))
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for _, future in batch:
                    future.set_result(None)

    def close(self) -> None:
        """Write what is waiting, then stop the writer (a later event starts it again)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            writer = self._writer
        if writer is not None:
            writer.join(timeout=30)

    def query(
        self,
        *,
        actor: str | None = None,
        study_instance_uid: str | None = None,
        action: AuditAction | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> Sequence[AuditEvent]:
        statement = select(AuditEvent)
        if actor:
            statement = statement.where(AuditEvent.actor == actor)
        if study_instance_uid:
            statement = statement.where(AuditEvent.study_instance_uid == study_instance_uid)
        if action:
            statement = statement.where(AuditEvent.action == action)
        if since:
            statement = statement.where(AuditEvent.at >= since)
        if until:
            statement = statement.where(AuditEvent.at < until)
        statement = statement.order_by(AuditEvent.id).limit(limit).offset(offset)
        with session_scope(self._sessions) as session:
            return session.scalars(statement).all()

    @staticmethod
    def to_csv(events: Sequence[AuditEvent]) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for event in events:
            writer.writerow([csv_cell(value) for value in (
                event.id, event.at.isoformat(), event.actor, event.role, event.action.value,
                event.study_instance_uid, event.outcome, event.request_id, event.client_ip)])
        yield buffer.getvalue()
