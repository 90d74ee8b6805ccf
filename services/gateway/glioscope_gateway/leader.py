"""Leader election for the Orthanc watcher: every gateway replica runs the watcher, only the leader works.

Postgres: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated connection (not
from the pool, never through a transaction-mode PgBouncer: the lock belongs to the server session).
Followers try to take it every `poll_s`; the leader sends a heartbeat (`SELECT 1`) at the same pace.
The session is opened with `idle_session_timeout = lease_s`, so the server itself ends the session of
a leader that stopped talking (frozen process, lost node, network partition) and frees the lock.

Hand-over bound (defaults poll_s = 2, lease_s = 10):
- the leader's process ends (crash, SIGKILL, pod deleted, graceful stop): its socket closes, Postgres ends
  the session and frees the lock at once; a follower takes it at its next try: <= poll_s (2 s);
- the leader hangs or its node/network is lost: Postgres ends the idle session lease_s after the last
  heartbeat; a follower takes it <= lease_s + poll_s (12 s) after the leader's last heartbeat.
The old leader counts itself leader only while its last successful heartbeat is younger than
lease_s - poll_s (a lease), so it stops before the server can hand the lock to another replica, as long
as a heartbeat's reply takes less than poll_s to arrive. A process frozen in the middle of a watcher
cycle may finish that cycle after it wakes up; the cycle's steps are idempotent (registering a study,
re-enqueueing a job: tasks load by ID and never run twice to two results).

SQLite (the embedded mode): no election; the lone process that runs the watcher is the leader (the
embedded stack runs exactly one, `glioscope_common.dev.stack`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, Gauge

logger = logging.getLogger("glioscope.gateway.leader")

# Not registered at import: only a process that runs the watcher exports it (1 leader, 0 follower).
# Alert GlioscopeWatcherLeader: sum over the gateways != 1 (infra/prometheus/rules).
WATCHER_LEADER = Gauge("glioscope_watcher_leader", "1 on the gateway replica whose Orthanc watcher leads, 0 on followers",
                       registry=None)
# The advisory lock's key (one bigint, the same in every replica): "glioscop" in ASCII.
WATCHER_LOCK_KEY = 0x676C696F73636F70


def export_leader_metric(is_leader: Callable[[], bool]) -> None:
    """Register glioscope_watcher_leader in the default registry, read from `is_leader` on scrape."""
    WATCHER_LEADER.set_function(lambda: 1.0 if is_leader() else 0.0)
    try:
        REGISTRY.register(WATCHER_LEADER)
    except ValueError:  # already registered (several apps in one process, e.g. tests)
        pass


class AlwaysLeader:
    """The embedded mode (SQLite): one process runs the watcher and it leads."""

    poll_s = 0.0
    lease_s = 0.0

    def __init__(self, on_elected: Callable[[], None] | None = None) -> None:
        self._on_elected = on_elected

    @property
    def is_leader(self) -> bool:
        return True

    def start(self) -> None:
        if self._on_elected:
            self._on_elected()

    def stop(self) -> None:
        pass


class PostgresLeaderLock:
    """Leadership = holding a session-level advisory lock on a dedicated Postgres connection."""

    def __init__(self, database_url: str, key: int = WATCHER_LOCK_KEY, poll_s: float = 2.0, lease_s: float = 10.0,
                 on_elected: Callable[[], None] | None = None, name: str = "glioscope-watcher") -> None:
        if lease_s < 2 * poll_s:
            raise ValueError("the lease must be at least two heartbeats long (lease_s >= 2 * poll_s)")
        self.poll_s = poll_s
        self.lease_s = lease_s
        self._conninfo = libpq_url(database_url)
        self._key = key
        self._on_elected = on_elected
        self._name = name
        self._connection: Any = None
        self._leading = False
        self._last_heartbeat = -float("inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        """True while this process holds the lock and its last heartbeat is fresh (the lease)."""
        with self._lock:
            return self._leading and time.monotonic() - self._last_heartbeat < self.lease_s - self.poll_s

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watcher-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Step down: closing the session frees the lock, a follower takes it at its next try."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.poll_s + 10)
        self._drop_connection()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.try_once()
            self._stop.wait(self.poll_s)

    def try_once(self) -> bool:
        """One step: connect if needed; the leader sends a heartbeat, a follower tries to take the lock."""
        try:
            if self._connection is None:
                self._connection = self._connect()
            if self._leading:
                self._connection.execute("SELECT 1").fetchone()
                with self._lock:
                    self._last_heartbeat = time.monotonic()
                return True
            got = bool(self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0])
            if got:
                with self._lock:
                    self._leading, self._last_heartbeat = True, time.monotonic()
                logger.info("this replica now leads the Orthanc watcher")
                if self._on_elected:
                    self._on_elected()
            return got
        except Exception as exc:  # connection lost or refused: follower until a new session takes the lock
            if self._leading:
                logger.warning("the watcher's leader lock was lost (%s); stepping down", type(exc).__name__)
            else:
                logger.debug("leader lock attempt failed", exc_info=True)
            self._drop_connection()
            return False

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, int(self.poll_s * 2)),
            application_name=self._name,
            # The server ends a session silent for lease_s (the lock with it); keepalives and the TCP user
            # timeout make a dead peer an error on this side too.
            options=f"-c idle_session_timeout={int(self.lease_s * 1000)} -c statement_timeout={int(self.poll_s * 1000)}",
            keepalives=1, keepalives_idle=max(1, int(self.poll_s)), keepalives_interval=1, keepalives_count=2,
            tcp_user_timeout=int(self.poll_s * 1000),
        )

    def _drop_connection(self) -> None:
        with self._lock:
            self._leading = False
            connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass


def libpq_url(database_url: str) -> str:
    """`postgresql+psycopg://…` (SQLAlchemy) as a libpq URL for psycopg.connect."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_leader_lock(database_url: str, poll_s: float, lease_s: float,
                     on_elected: Callable[[], None] | None = None) -> AlwaysLeader | PostgresLeaderLock:
    if database_url.startswith("postgresql"):
        return PostgresLeaderLock(database_url, poll_s=poll_s, lease_s=lease_s, on_elected=on_elected)
    return AlwaysLeader(on_elected)
