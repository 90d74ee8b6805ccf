"""Where a reader of Orthanc's change feed left off (a row of watcher_cursors per reader): the study watcher
and the result router each keep their own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from glioscope_common.db import session_scope
from glioscope_common.records.models import WatcherCursor


def read_cursor(sessions: sessionmaker[Session], name: str) -> int | None:
    with session_scope(sessions) as session:
        row = session.scalars(select(WatcherCursor).where(WatcherCursor.name == name)).first()
        return row.last_change if row else None


def save_cursor(sessions: sessionmaker[Session], name: str, last: int) -> None:
    with session_scope(sessions) as session:
        row = session.scalars(select(WatcherCursor).where(WatcherCursor.name == name)).first()
        if row is None:
            session.add(WatcherCursor(name=name, last_change=last))
        else:
            row.last_change = last
