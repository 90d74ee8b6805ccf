"""Finding 9: inputs that used to end in an unhandled 500 get a clear 4xx: an upload zip whose member
fails its CRC-32 (or does not inflate), and audit-log filters without a time zone. The gateway runs in
process against the real Orthanc (both cases are also in the bad-input corpus, tests/data/bad)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_gateway.main import create_app

from .conftest import gw

pytestmark = pytest.mark.services

SERVICE_TOKEN = "bad-input-4xx-service-token-0123456789abcdef"
PASSWORD = "a-long-enough-password-42"


def gateway_for(tmp_path: Path, orthanc: LocalOrthanc, **overrides: object) -> TestClient:
    # Orthanc's URLs and, where it asks for them, its credentials.
    values = {**getattr(orthanc, "settings_values", {}), "service_token": SERVICE_TOKEN, **overrides}
    settings = gw.gateway_settings(tmp_path, orthanc, **values)
    return TestClient(create_app(settings), headers={"x-api-key": gw.SERVICE_KEY})


@pytest.fixture()
def gateway(tmp_path: Path, orthanc: LocalOrthanc) -> Iterator[TestClient]:
    with gateway_for(tmp_path, orthanc) as client:
        yield client


def study_zip(tmp_path: Path, compression: int) -> tuple[bytes, list[str]]:
    root = tmp_path / "study"
    names = [path.relative_to(root).as_posix() for path in gw.small_study(root, seed=918)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name in names:
            archive.writestr(name, (root / name).read_bytes())
    return buffer.getvalue(), names


def damage(archive: bytes, member: str) -> bytes:
    """Flip one byte in the middle of `member`'s data (its headers, sizes and CRC stay as they were)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        info = z.getinfo(member)
    name_length = len(info.filename.encode())
    local_extra = int.from_bytes(archive[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + local_extra
    data = bytearray(archive)
    data[start + info.compress_size // 2] ^= 0xFF
    return bytes(data)


def orthanc_studies(orthanc: LocalOrthanc) -> set[str]:
    response = httpx.get(f"{orthanc.url}/studies", auth=getattr(orthanc, "auth", None), timeout=10)
    response.raise_for_status()
    return set(response.json())


@pytest.mark.parametrize("upload_processes", [0, 1], ids=["in-threads", "in-an-upload-process"])
def test_a_zip_member_with_a_bad_crc_is_a_400_naming_it(tmp_path: Path, orthanc: LocalOrthanc,
                                                        upload_processes: int) -> None:
    archive, members = study_zip(tmp_path, zipfile.ZIP_STORED)
    victim = members[len(members) // 2]
    before = orthanc_studies(orthanc)
    with gateway_for(tmp_path, orthanc, upload_processes=upload_processes) as gateway:
        response = gateway.post("/api/studies", files=[("files", ("study.zip", damage(archive, victim), "application/zip"))])
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_input"
        assert f"zip member '{victim}' is corrupt" in body["detail"] and "CRC" in body["detail"], body
        assert gateway.get("/api/studies").json() == []
        assert gateway.get("/healthz").status_code == 200
    assert orthanc_studies(orthanc) == before


def test_a_zip_member_that_does_not_inflate_is_a_400(gateway: TestClient, tmp_path: Path) -> None:
    archive, members = study_zip(tmp_path, zipfile.ZIP_DEFLATED)
    response = gateway.post("/api/studies", files=[("files", ("s.zip", damage(archive, members[0]), "application/zip"))])
    assert response.status_code == 400, response.text
    assert f"zip member '{members[0]}' is corrupt" in response.json()["detail"]


def test_the_intact_zip_still_uploads(gateway: TestClient, tmp_path: Path) -> None:
    archive, _ = study_zip(tmp_path, zipfile.ZIP_STORED)
    response = gateway.post("/api/studies", files=[("files", ("study.zip", archive, "application/zip"))])
    assert response.status_code in (201, 202), response.text


@pytest.mark.parametrize("route", ["/api/admin/audit", "/api/admin/audit/export"])
@pytest.mark.parametrize("name,value", [("since", "2026-12-03T10:00:00"), ("until", "2026-12-03 10:00"),
                                        ("since", "2026-12-03T10:00:00.123456")])
def test_audit_times_without_a_time_zone_are_a_400(gateway: TestClient, route: str, name: str, value: str) -> None:
    admin = gw.bearer(gw.sign_in(gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    response = gateway.get(route, params={name: value}, headers=admin)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_input" and body["request_id"]
    assert f"`{name}` needs a time zone" in body["detail"] and "2026-12-03T10:00:00Z" in body["detail"]


def test_audit_times_out_of_range_are_a_400(gateway: TestClient) -> None:
    admin = gw.bearer(gw.sign_in(gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    response = gateway.get("/api/admin/audit", params={"since": "0001-01-01T00:00:00+14:00"}, headers=admin)
    assert response.status_code == 400, response.text
    assert "out of range" in response.json()["detail"]


def test_audit_times_with_any_time_zone_compare_as_instants(gateway: TestClient) -> None:
    """An offset other than UTC is converted, not compared as wall-clock text (SQLite stores UTC)."""
    admin = gw.bearer(gw.sign_in(gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    events = gateway.get("/api/admin/audit", params={"action": "signed_in"}, headers=admin).json()
    assert events
    at = datetime.fromisoformat(events[-1]["at"]).astimezone(UTC)
    east = (at - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=2)))  # a minute before, at +02:00
    west = (at + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=-7)))  # a minute after, at -07:00
    found = gateway.get("/api/admin/audit", params={"action": "signed_in", "since": east.isoformat()}, headers=admin)
    assert found.status_code == 200 and events[-1]["id"] in [e["id"] for e in found.json()]
    later = gateway.get("/api/admin/audit", params={"action": "signed_in", "since": west.isoformat()}, headers=admin)
    assert later.status_code == 200 and events[-1]["id"] not in [e["id"] for e in later.json()]
    before = gateway.get("/api/admin/audit", params={"action": "signed_in", "until": east.isoformat()}, headers=admin)
    assert before.status_code == 200 and events[-1]["id"] not in [e["id"] for e in before.json()]


def test_the_time_zone_check_comes_after_authorisation(gateway: TestClient) -> None:
    """Only admins learn about their filters: others get 401/403 whatever the query."""
    assert gateway.get("/api/admin/audit", params={"since": "2026-12-03T10:00:00"}).status_code == 403
    assert gateway.get("/api/admin/audit", params={"since": "2026-12-03T10:00:00"},
                       headers={"x-api-key": ""}).status_code == 401
