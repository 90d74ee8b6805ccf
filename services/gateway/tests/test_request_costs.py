"""What keeps a request cheap under load (docs/performance.md, Load): API keys remembered for a few
seconds (revocation drops them at once), audit events written together (group commit) without
answering before they are committed, uploads processed outside the API process."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from glioscope_common.db import make_engine, make_session_factory, session_scope
from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.records.access import ApiKey, AuditAction, AuditEvent
from glioscope_common.records.migrate import migrate
from glioscope_gateway.audit.service import AuditLog
from glioscope_gateway.main import create_app

from .conftest import ADMIN_PASSWORD, ADMIN_USERNAME, as_files, bearer, gateway_settings, sign_in, small_study

pytestmark = pytest.mark.services


def _deactivate_in_database(client: TestClient, key_id: str) -> None:
    """What another replica's revocation does: only the row changes."""
    with session_scope(client.app.state.container.sessions) as session:  # type: ignore[attr-defined]
        session.get(ApiKey, key_id).active = False


def test_a_verified_api_key_is_remembered_and_revoking_it_drops_it(gateway: TestClient) -> None:
    admin = bearer(sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)["access_token"])
    created = gateway.post("/api/admin/api-keys", json={"name": "router", "projects": ["alpha"]}, headers=admin).json()
    key = {"x-api-key": created["key"]}
    assert gateway.get("/api/studies", headers=key).status_code == 200
    # Revoked elsewhere: this replica still knows the key for at most api_key_cache_s seconds.
    _deactivate_in_database(gateway, created["id"])
    assert gateway.get("/api/studies", headers=key).status_code == 200
    # Revoked here: refused at once.
    assert gateway.delete(f"/api/admin/api-keys/{created['id']}", headers=admin).status_code == 204
    assert gateway.get("/api/studies", headers=key).status_code == 401
    assert gateway.delete("/api/admin/api-keys/nonexistent", headers=admin).status_code == 404
    assert gateway.delete(f"/api/admin/api-keys/{created['id']}", headers=key).status_code == 401
    # Only admins revoke.
    other = gateway.post("/api/admin/api-keys", json={"name": "other", "projects": None}, headers=admin).json()
    assert gateway.delete(f"/api/admin/api-keys/{other['id']}", headers={"x-api-key": other["key"]}).status_code == 403
    assert gateway.get("/api/auth/me", headers={"x-api-key": other["key"]}).status_code == 200


def test_a_key_revoked_on_another_replica_stops_working_within_the_cache_ttl(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    """The promise (docs/security.md): a key revoked on one replica is refused there at once and by every other
    replica within api_key_cache_s. Two gateways on one database; replica A has the key cached when replica B
    revokes it. Catches a cache that never expires (a revoked key working forever on the other replicas)."""
    ttl = 2.0
    settings = gateway_settings(tmp_path, orthanc, api_key_cache_s=ttl)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        admin = bearer(sign_in(b, ADMIN_USERNAME, ADMIN_PASSWORD)["access_token"])
        created = b.post("/api/admin/api-keys", json={"name": "router"}, headers=admin).json()
        key = {"x-api-key": created["key"]}
        assert a.get("/api/studies", headers=key).status_code == 200  # verified and cached by A
        cached_at = time.monotonic()
        assert b.delete(f"/api/admin/api-keys/{created['id']}", headers=admin).status_code == 204
        assert b.get("/api/studies", headers=key).status_code == 401  # B: at once
        while (status := a.get("/api/studies", headers=key).status_code) == 200:
            assert time.monotonic() - cached_at <= ttl + 1.0, "replica A still accepts the revoked key after its TTL"
            time.sleep(0.1)
        assert status == 401
        assert a.get("/api/auth/me", headers=key).status_code == 401  # and stays refused


def test_without_the_cache_every_request_looks_the_key_up(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    settings = gateway_settings(tmp_path, orthanc, api_key_cache_s=0)
    with TestClient(create_app(settings)) as client:
        admin = bearer(sign_in(client, ADMIN_USERNAME, ADMIN_PASSWORD)["access_token"])
        created = client.post("/api/admin/api-keys", json={"name": "router"}, headers=admin).json()
        assert client.get("/api/studies", headers={"x-api-key": created["key"]}).status_code == 200
        _deactivate_in_database(client, created["id"])
        assert client.get("/api/studies", headers={"x-api-key": created["key"]}).status_code == 401


def test_concurrent_audit_events_are_all_committed_before_record_returns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    migrate(url)
    engine = make_engine(url)
    log = AuditLog(make_session_factory(engine))
    errors: list[BaseException] = []

    def view(n: int) -> None:
        try:
            for i in range(10):
                log.record(actor=f"user{n}", role="clinician", action=AuditAction.viewed, study_instance_uid=f"1.2.{i}",
                           outcome="ok", request_id=f"r{n}-{i}", client_ip="127.0.0.1")
                with engine.connect() as connection:  # committed: visible from another connection
                    assert connection.execute(sa.select(AuditEvent.id).where(AuditEvent.request_id == f"r{n}-{i}")).first()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=view, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 80
    # Deduplicated events are not queued at all; close() flushes and a later event starts the writer again.
    fields = dict(actor="user0", role="clinician", action=AuditAction.viewed, study_instance_uid="1.2.3", outcome="ok",
                  request_id=None, client_ip=None, dedupe=True)
    assert log.submit(**fields) is not None  # type: ignore[arg-type]
    assert log.submit(**fields) is None  # type: ignore[arg-type]
    log.close()
    log.record(actor="late", role="admin", action=AuditAction.viewed, study_instance_uid=None, outcome="ok",
               request_id=None, client_ip=None)
    log.close()
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar() == 82
    engine.dispose()


def test_a_failed_audit_write_fails_every_waiting_request(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/no-tables.db")  # no audit_events table: every insert fails
    log = AuditLog(make_session_factory(engine))
    with pytest.raises(sa.exc.OperationalError):
        log.record(actor="a", role="admin", action=AuditAction.viewed, study_instance_uid=None, outcome="ok",
                   request_id=None, client_ip=None)
    log.close()
    engine.dispose()


def test_an_upload_process_that_dies_is_replaced(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    settings = gateway_settings(tmp_path, orthanc, upload_processes=1)
    with TestClient(create_app(settings), headers={"x-api-key": settings.bootstrap_api_key.get_secret_value()}) as client:  # type: ignore[union-attr]
        ingest = client.app.state.container.ingest  # type: ignore[attr-defined]
        assert ingest.in_processes
        first = client.post("/api/studies", files=as_files(small_study(tmp_path / "a", seed=61)))
        assert first.status_code == 201, first.text
        (pid,) = list(ingest._executor._processes)  # noqa: SLF001 - the test kills the upload process
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        files = as_files(small_study(tmp_path / "b", seed=62))
        broken = client.post("/api/studies", files=files)
        if broken.status_code != 201:  # the pool noticed the death on this upload: a clear 503, nothing kept
            assert broken.status_code == 503, broken.text
            assert broken.json()["error"] == "upstream_unavailable"
            again = client.post("/api/studies", files=files)
            assert again.status_code == 201, again.text
        assert len(client.get("/api/studies").json()) == 2


def test_a_read_scope_leaves_the_pooled_connection_transactional(tmp_path: Path) -> None:
    from glioscope_common.db import read_scope

    url = f"sqlite:///{tmp_path}/reads.db"
    migrate(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with read_scope(sessions) as session:
        assert session.scalars(sa.select(AuditEvent)).all() == []
    with pytest.raises(RuntimeError), session_scope(sessions) as session:  # the same pooled connection
        session.add(AuditEvent(actor="a", role="admin", action=AuditAction.viewed, outcome="ok"))
        session.flush()
        raise RuntimeError("rolled back")
    with read_scope(sessions) as session:
        assert session.scalars(sa.select(AuditEvent)).all() == []
    engine.dispose()
