"""Leader election of the Orthanc watcher (glioscope_gateway.leader) against the real Postgres: exactly one
replica leads; a killed leader hands over within poll_s, a frozen one within lease_s + poll_s; the new
leader's watcher picks up a study that became stable during the hand-over."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.testing import fresh_postgres_database
from glioscope_gateway.leader import AlwaysLeader, PostgresLeaderLock, libpq_url, make_leader_lock

from .conftest import SERVICE_KEY, gateway_settings, small_study

pytestmark = pytest.mark.services

POLL_S = 0.3
LEASE_S = 2.0
SLACK_S = 1.5  # scheduling on a busy 2-core machine


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until `condition()` held (polled every 50 ms); fails after `timeout_s`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


@pytest.fixture()
def key() -> int:
    """A lock key of this test's own (other tests and sessions share the server)."""
    return secrets.randbits(62)


def holders(postgres_url: str, key: int) -> int:
    import psycopg

    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
        return int(connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = %s", (key,)).fetchone()[0])


def lock(url: str, key: int, **kwargs: object) -> PostgresLeaderLock:
    return PostgresLeaderLock(url, key=key, poll_s=POLL_S, lease_s=LEASE_S, **kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def locks(postgres_url: str, key: int) -> Iterator[list[PostgresLeaderLock]]:
    made: list[PostgresLeaderLock] = []
    yield made
    for candidate in made:
        candidate.stop()


def test_exactly_one_of_two_leads_and_a_stopped_leader_hands_over(postgres_url: str, key: int, locks: list[PostgresLeaderLock]) -> None:
    elected: list[str] = []
    a = lock(postgres_url, key, on_elected=lambda: elected.append("a"))
    b = lock(postgres_url, key, on_elected=lambda: elected.append("b"))
    locks += [a, b]
    a.start()
    wait_for(lambda: a.is_leader, 10, "the first candidate leads")
    b.start()
    time.sleep(3 * POLL_S)  # b tries several times meanwhile
    assert a.is_leader and not b.is_leader and elected == ["a"]
    assert holders(postgres_url, key) == 1
    a.stop()
    took = wait_for(lambda: b.is_leader, POLL_S + SLACK_S, "the follower takes over")
    assert elected == ["a", "b"] and not a.is_leader and holders(postgres_url, key) == 1
    print(f"graceful hand-over in {took:.2f} s")


def test_a_leader_whose_session_ends_steps_down(postgres_url: str, key: int, locks: list[PostgresLeaderLock]) -> None:
    """The server ends the leader's session (pg_terminate_backend: a restart, a failover, an admin):
    the leader notices at its next heartbeat and the other replica leads."""
    import psycopg

    a, b = lock(postgres_url, key, name="leader-a"), lock(postgres_url, key, name="leader-b")
    locks += [a, b]
    a.start()
    wait_for(lambda: a.is_leader, 10, "a leads")
    b.start()
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leader-a'")
    wait_for(lambda: b.is_leader, POLL_S + SLACK_S, "b takes over")
    wait_for(lambda: not a.is_leader, POLL_S + SLACK_S, "a steps down")
    assert holders(postgres_url, key) == 1


CANDIDATE = textwrap.dedent("""
    import sys, time
    from glioscope_gateway.leader import PostgresLeaderLock
    lock = PostgresLeaderLock(sys.argv[1], key=int(sys.argv[2]), poll_s=float(sys.argv[3]), lease_s=float(sys.argv[4]))
    lock.start()
    state = None
    while True:
        if lock.is_leader != state:
            state = lock.is_leader
            print("LEADER" if state else "FOLLOWER", flush=True)
        time.sleep(0.02)
""")


class Candidate:
    """A leader-lock candidate in its own process (printing LEADER / FOLLOWER on every change)."""

    def __init__(self, url: str, key: int, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "-c", CANDIDATE, url, str(key), str(POLL_S), str(LEASE_S)],
                                            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))

    def states(self) -> list[str]:
        return [line for line in self.log.read_text().split() if line in ("LEADER", "FOLLOWER")]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(10)


@pytest.fixture()
def candidate(postgres_url: str, key: int, tmp_path: Path) -> Iterator[Candidate]:
    started = Candidate(postgres_url, key, tmp_path / "candidate.log")
    try:
        wait_for(lambda: "LEADER" in started.states(), 30, f"the candidate process leads: {started.log.read_text()}")
        yield started
    finally:
        started.close()


def test_a_killed_leader_process_hands_over_within_the_poll_interval(
        postgres_url: str, key: int, candidate: Candidate, locks: list[PostgresLeaderLock]) -> None:
    follower = lock(postgres_url, key)
    locks.append(follower)
    follower.start()
    time.sleep(3 * POLL_S)
    assert not follower.is_leader
    candidate.process.kill()  # SIGKILL: no goodbye; the OS closes the socket, Postgres frees the lock
    took = wait_for(lambda: follower.is_leader, POLL_S + SLACK_S, "the follower leads after the leader was killed")
    assert holders(postgres_url, key) == 1
    print(f"hand-over after SIGKILL in {took:.2f} s (bound: poll {POLL_S} s)")


def test_a_frozen_leader_loses_the_lock_after_the_lease_and_knows_it(
        postgres_url: str, key: int, candidate: Candidate, locks: list[PostgresLeaderLock]) -> None:
    follower = lock(postgres_url, key)
    locks.append(follower)
    follower.start()
    candidate.process.send_signal(signal.SIGSTOP)  # hung: its socket stays open, no heartbeat
    frozen = time.monotonic()
    wait_for(lambda: follower.is_leader, LEASE_S + POLL_S + SLACK_S, "the follower leads after the lease")
    took = time.monotonic() - frozen
    assert took >= LEASE_S - POLL_S, "the lock moved before the frozen leader's lease ran out"
    candidate.process.send_signal(signal.SIGCONT)
    # Woken up, the old leader counts itself follower (its lease ran out) and never leads beside the new one.
    wait_for(lambda: candidate.states()[-1] == "FOLLOWER", 2 * POLL_S + SLACK_S, "the old leader steps down")
    time.sleep(3 * POLL_S)
    assert candidate.states()[-1] == "FOLLOWER" and follower.is_leader and holders(postgres_url, key) == 1
    print(f"hand-over from a frozen leader in {took:.2f} s (bound: lease {LEASE_S} + poll {POLL_S} s)")


def test_sqlite_means_one_process_that_leads() -> None:
    woken: list[bool] = []
    alone = make_leader_lock("sqlite:///x.db", 2, 10, on_elected=lambda: woken.append(True))
    assert isinstance(alone, AlwaysLeader)
    alone.start()
    assert alone.is_leader and woken == [True]
    with pytest.raises(ValueError):
        PostgresLeaderLock("postgresql+psycopg://u@h/db", poll_s=5, lease_s=6)


# -- the watcher behind the election, on two gateway apps ------------------------------------------


class RecordingQueue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self.sent.append(job_id)


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of the test's own: the gateways bootstrap their admin into it, which in the session's
    database would keep the end-to-end platform from bootstrapping its own admin later in the session."""
    with fresh_postgres_database("glioscope_leader") as url:
        yield url


def test_two_gateways_one_watcher_leads_and_the_next_picks_up_a_study_sent_during_the_hand_over(
        own_database: str, orthanc: LocalOrthanc, tmp_path: Path) -> None:
    postgres_url = own_database
    from glioscope_gateway.main import create_app

    def app(name: str, queue: RecordingQueue):  # type: ignore[no-untyped-def]
        return create_app(gateway_settings(tmp_path / name, orthanc, database_url=postgres_url, orthanc_watcher=True,
                                           orthanc_watch_interval_s=0.5, watcher_leader_poll_s=POLL_S,
                                           watcher_leader_lease_s=LEASE_S), queue=queue)

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    queue_a, queue_b = RecordingQueue(), RecordingQueue()
    first = TestClient(app("a", queue_a), headers={"x-api-key": SERVICE_KEY})
    first.__enter__()
    try:
        leader_a = first.app.state.watcher_leader  # type: ignore[attr-defined]
        wait_for(lambda: leader_a.is_leader, 10, "the first gateway's watcher leads")
        with TestClient(app("b", queue_b), headers={"x-api-key": SERVICE_KEY}) as second:
            leader_b = second.app.state.watcher_leader  # type: ignore[attr-defined]
            time.sleep(3 * POLL_S)
            assert leader_a.is_leader and not leader_b.is_leader
            assert second.app.state.watcher.cycles == 0  # type: ignore[attr-defined]  # a follower does nothing
            # The metric the alert reads (one process here: the gauge follows the last-started app, b).
            assert "glioscope_watcher_leader 0.0" in second.get("/metrics").text
            # A study reaches the PACS directly; the leader goes away before it is stable (StableAge 2 s).
            paths = small_study(tmp_path / "direct", seed=31)
            orthanc.dicomweb().store_instances([p.read_bytes() for p in paths])
            first.__exit__(None, None, None)
            first = None  # type: ignore[assignment]
            wait_for(lambda: leader_b.is_leader, POLL_S + SLACK_S, "the second gateway's watcher leads")
            import pydicom

            uid = pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID

            def registered() -> bool:
                response = second.get(f"/api/studies/{uid}")
                return response.status_code == 200 and response.json()["status"] == "ready"

            wait_for(registered, 30, "the new leader's watcher registers the study sent during the hand-over")
            assert "glioscope_watcher_leader 1.0" in second.get("/metrics").text
            # Only this study's job counts: the shared session Orthanc may hold other tests' studies, which a
            # watcher reading the change feed from its start registers too.
            job_id = second.get(f"/api/studies/{uid}").json()["latest_job"]["id"]
            # Exactly one job for it, whichever watcher registered it: the new leader, or the old one when its
            # last cycle (longer when the shared Orthanc holds other tests' studies) outlived the StableAge.
            assert (queue_a.sent + queue_b.sent).count(job_id) == 1, (job_id, queue_a.sent, queue_b.sent)
    finally:
        if first is not None:
            first.__exit__(None, None, None)
