"""Audit events written by the internal services that change data (reporting, NIfTI).

The gateway audits every request it answers; the service that performs a write records it too, with
the identity it verified (glioscope_common.internal_identity), so that a write that reached the
service some other way is on the record as well. Rows go to the same append-only `audit_events`
table (created by the records' migrations, which the gateway or the chart's migrations Job runs).
A write that cannot be audited answers 503 (the change itself is kept, and logged without PHI).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope
from glioscope_common.errors import UpstreamUnavailable
from glioscope_common.internal_identity import InternalIdentity
from glioscope_common.records.access import AuditAction, AuditEvent

logger = logging.getLogger("glioscope.audit")


class AuditTrail:
    def __init__(self, sessions: sessionmaker[Session], service: str) -> None:
        self._sessions = sessions
        self.service = service

    def record(self, who: InternalIdentity, action: AuditAction, *, study_instance_uid: str | None = None,
               outcome: str = "ok", request_id: str | None = None, client_ip: str | None = None) -> None:
        event = AuditEvent(actor=who.subject[:64], role=who.role[:16], action=action,
                           study_instance_uid=(study_instance_uid or None) and study_instance_uid[:64],
                           outcome=outcome, request_id=request_id, client_ip=client_ip)
        try:
            with session_scope(self._sessions) as session:
                session.add(event)
        except Exception as exc:
            logger.error("audit write failed", extra={"service": self.service, "action": action.value,
                                                      "actor": who.subject, "outcome": outcome})
            raise UpstreamUnavailable("the change was made but could not be audited") from exc
