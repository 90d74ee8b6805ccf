"""Authentication and authorisation: local JWTs (expiry, refresh rotation), API keys, roles, projects,
rate limits, security headers, settings that refuse default secrets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from jose import jwt
from pydantic import ValidationError

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.settings import DEVELOPMENT_SECRET
from glioscope_gateway.main import create_app
from glioscope_gateway.settings import GatewaySettings

from .conftest import ADMIN_PASSWORD, ADMIN_USERNAME, JWT_SECRET, as_files, bearer, gateway_settings, sign_in, small_study

pytestmark = pytest.mark.services

PASSWORD = "a-long-enough-password-42"


def make_user(gateway: TestClient, username: str, role: str, projects: list[str]) -> dict[str, str]:
    admin = sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)
    response = gateway.post("/api/admin/users", json={"username": username, "password": PASSWORD, "role": role,
                                                      "projects": projects}, headers=bearer(admin["access_token"]))
    assert response.status_code == 201, response.text
    return bearer(sign_in(gateway, username, PASSWORD)["access_token"])


def upload_to(gateway: TestClient, tmp_path: Path, seed: int, project: str) -> dict:
    response = gateway.post("/api/studies", files=as_files(small_study(tmp_path / f"s{seed}", seed=seed)),
                            data={"project": project})
    assert response.status_code == 201, response.text
    return response.json()


def test_anonymous_requests_are_refused(gateway_app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(gateway_app) as anonymous:
        for method, path in [("GET", "/api/studies"), ("GET", "/api/studies/1.2.3"), ("GET", "/api/jobs/x"),
                             ("GET", "/dicom-web/studies"), ("GET", "/api/admin/users"), ("GET", "/api/auth/me"),
                             ("POST", "/api/studies/1.2.3/export")]:
            response = anonymous.request(method, path)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/api/studies", headers={"x-api-key": "wrong"}).json()["detail"] == "invalid API key"
        assert anonymous.get("/api/studies", headers={"authorization": "Bearer not.a.jwt"}).status_code == 401


def test_sign_in_me_and_wrong_password(gateway: TestClient) -> None:
    tokens = sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = gateway.get("/api/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me == {"subject": ADMIN_USERNAME, "role": "admin", "projects": None, "kind": "password", "deidentified": False}
    assert gateway.get("/api/auth/me").json()["role"] == "service"  # the bootstrap API key
    wrong = gateway.post("/api/auth/token", data={"username": ADMIN_USERNAME, "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid username or password"
    unknown = gateway.post("/api/auth/token", data={"username": "nobody", "password": "nope"})
    assert unknown.json()["detail"] == "invalid username or password"
    # A refresh token is not an access token.
    assert gateway.get("/api/auth/me", headers=bearer(tokens["refresh_token"])).status_code == 401


def test_expired_and_forged_tokens(gateway: TestClient) -> None:
    now = int(time.time())
    claims = {"iss": "glioscope", "sub": ADMIN_USERNAME, "typ": "access", "jti": "x", "role": "admin",
              "projects": None, "iat": now - 1000, "exp": now - 10}
    expired = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    response = gateway.get("/api/studies", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["detail"] == "token expired"
    forged = jwt.encode({**claims, "exp": now + 600}, "another-secret-that-is-long-enough-000", algorithm="HS256")
    assert gateway.get("/api/studies", headers=bearer(forged)).json()["detail"] == "invalid token"
    unsigned = jwt.encode({**claims, "exp": now + 600}, "", algorithm="HS256").rsplit(".", 1)[0] + "."
    assert gateway.get("/api/studies", headers=bearer(unsigned)).status_code == 401


def test_refresh_rotates_and_a_reused_refresh_token_revokes(gateway: TestClient) -> None:
    first = sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)
    second = gateway.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    second_tokens = second.json()
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert gateway.get("/api/auth/me", headers=bearer(second_tokens["access_token"])).status_code == 200
    reused = gateway.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401 and "already used" in reused.json()["detail"]
    # The reuse revoked the whole family: the newer refresh token is dead too.
    assert gateway.post("/api/auth/refresh", json={"refresh_token": second_tokens["refresh_token"]}).status_code == 401
    assert gateway.post("/api/auth/refresh", json={"refresh_token": first["access_token"]}).status_code == 401


def test_roles(gateway: TestClient, tmp_path: Path) -> None:
    study = upload_to(gateway, tmp_path, 11, "alpha")["study"]
    uid = study["study_instance_uid"]
    clinician = make_user(gateway, "clin", "clinician", ["alpha"])
    researcher = make_user(gateway, "res", "researcher", ["alpha"])
    radiologist = make_user(gateway, "rad", "radiologist", ["alpha"])
    # Clinicians read, with identifiers, but do not upload or start jobs.
    seen = gateway.get(f"/api/studies/{uid}", headers=clinician).json()
    assert seen["patient_name"] == "Small^Study" and seen["project"] == "alpha"
    refused = gateway.post("/api/studies", files=as_files(small_study(tmp_path / "c", seed=12)), headers=clinician)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert gateway.post(f"/api/studies/{uid}/jobs", headers=clinician).status_code == 403
    # Researchers see de-identified studies, may not search by identifiers, and get no raw DICOM.
    for item in [gateway.get(f"/api/studies/{uid}", headers=researcher).json(),
                 gateway.get("/api/studies", headers=researcher).json()[0]]:
        assert item["patient_name"] == item["patient_id"] == item["patient_birth_date"] == item["accession_number"] == ""
        assert item["study_instance_uid"] == uid
    assert gateway.get("/api/studies", params={"search": "Study"}, headers=researcher).json() == []
    assert len(gateway.get("/api/studies", params={"search": "Study"}, headers=clinician).json()) == 1
    dicomweb = gateway.get(f"/dicom-web/studies/{uid}/series", headers=researcher)
    assert dicomweb.status_code == 403 and "export" in dicomweb.json()["detail"]
    assert gateway.get(f"/api/studies/{uid}/segmentation", headers=researcher).status_code == 403
    assert gateway.get(f"/api/studies/{uid}/report.pdf", headers=researcher).status_code == 403
    # Only admins administer.
    for headers in (clinician, researcher, radiologist):
        assert gateway.get("/api/admin/users", headers=headers).status_code == 403
        assert gateway.get("/api/admin/audit", headers=headers).status_code == 403
    assert gateway.get("/api/admin/users").status_code == 403  # the service key neither
    # Radiologists upload to their project.
    own = gateway.post("/api/studies", files=as_files(small_study(tmp_path / "r", seed=13)), headers=radiologist)
    assert own.status_code == 201 and own.json()["study"]["project"] == "alpha"


def test_projects_scope_every_route(gateway: TestClient, tmp_path: Path) -> None:
    a = upload_to(gateway, tmp_path, 21, "alpha")
    b = upload_to(gateway, tmp_path, 22, "beta")
    uid_a, uid_b = a["study"]["study_instance_uid"], b["study"]["study_instance_uid"]
    alice = make_user(gateway, "alice", "radiologist", ["alpha"])
    worklist = gateway.get("/api/studies", headers=alice).json()
    assert [s["study_instance_uid"] for s in worklist] == [uid_a]
    assert len(gateway.get("/api/studies").json()) == 2  # the service key sees all
    for path in (f"/api/studies/{uid_b}", f"/api/studies/{uid_b}/measurements", f"/api/jobs/{b['job']['id']}",
                 f"/api/jobs/{b['job']['id']}/events", f"/dicom-web/studies/{uid_b}/series",
                 f"/dicom-web/studies/{uid_b}/metadata"):
        response = gateway.get(path, headers=alice)
        assert response.status_code == 404, (path, response.text)
    assert gateway.put(f"/api/studies/{uid_b}/sequences", json={"overrides": {}}, headers=alice).status_code == 404
    assert gateway.post(f"/api/studies/{uid_b}/jobs", headers=alice).status_code == 404
    assert gateway.post(f"/api/studies/{uid_b}/export", headers=alice).status_code == 404
    assert gateway.get(f"/api/jobs/{a['job']['id']}", headers=alice).status_code == 200
    # QIDO-RS is filtered to the caller's studies; WADO-RS of their own study works.
    qido = gateway.get("/dicom-web/studies", headers=alice)
    assert qido.status_code == 200
    assert [item["0020000D"]["Value"][0] for item in qido.json()] == [uid_a]
    series = gateway.get("/dicom-web/series", headers=alice).json()
    assert {item["0020000D"]["Value"][0] for item in series} == {uid_a}
    assert gateway.get(f"/dicom-web/studies/{uid_a}/series", headers=alice).status_code == 200
    assert len(gateway.get("/dicom-web/studies").json()) >= 2
    # Uploading to a project one does not belong to, or re-uploading another project's study.
    other = gateway.post("/api/studies", files=as_files(small_study(tmp_path / "x", seed=23)),
                         data={"project": "beta"}, headers=alice)
    assert other.status_code == 403
    again = gateway.post("/api/studies", files=as_files(small_study(tmp_path / "y", seed=22)), headers=alice)
    assert again.status_code == 409


def test_api_keys_and_users_admin(gateway: TestClient) -> None:
    admin = bearer(sign_in(gateway, ADMIN_USERNAME, ADMIN_PASSWORD)["access_token"])
    created = gateway.post("/api/admin/api-keys", json={"name": "pacs-router", "projects": ["alpha"]}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    me = gateway.get("/api/auth/me", headers={"x-api-key": key}).json()
    assert me == {"subject": f"key:{created.json()['id']}", "role": "service", "projects": ["alpha"],
                  "kind": "api_key", "deidentified": False}
    users = gateway.get("/api/admin/users", headers=admin).json()
    assert [u["username"] for u in users] == [ADMIN_USERNAME]
    assert "password_hash" not in users[0]
    dup = gateway.post("/api/admin/users", json={"username": ADMIN_USERNAME, "password": PASSWORD, "role": "clinician"},
                       headers=admin)
    assert dup.status_code == 409
    short = gateway.post("/api/admin/users", json={"username": "bob", "password": "short", "role": "clinician"},
                         headers=admin)
    assert short.status_code == 422
    bad_project = gateway.post("/api/admin/users", json={"username": "bob", "password": PASSWORD, "role": "clinician",
                                                         "projects": ["../etc"]}, headers=admin)
    assert bad_project.status_code == 400


def test_sign_in_rate_limit(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    with TestClient(create_app(gateway_settings(tmp_path, orthanc, signin_burst=5))) as gateway:
        _sign_in_until_limited(gateway)


def _sign_in_until_limited(gateway: TestClient) -> None:
    codes = [gateway.post("/api/auth/token", data={"username": "x", "password": "y"}).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5
    assert codes[-1] == 429
    limited = gateway.post("/api/auth/token", data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"


def test_upload_rate_limit(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    settings = gateway_settings(tmp_path, orthanc, upload_burst=2, upload_rate_per_min=1)
    with TestClient(create_app(settings), headers={"x-api-key": settings.bootstrap_api_key.get_secret_value()}) as client:
        junk = [("files", ("a.dcm", b"not dicom" * 10, "application/dicom"))]
        codes = [client.post("/api/studies", files=junk).status_code for _ in range(3)]
        assert codes == [400, 400, 429]


def test_security_headers_and_no_cors(gateway: TestClient) -> None:
    response = gateway.get("/api/studies", headers={"origin": "https://evil.example"})
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers
    assert "access-control-allow-origin" not in response.headers
    preflight = gateway.options("/api/studies", headers={"origin": "https://evil.example",
                                                         "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers


def test_hsts_in_production_and_cors_when_configured(tmp_path: Path, orthanc: LocalOrthanc) -> None:
    settings = gateway_settings(tmp_path, orthanc, environment="production", service_token="a-production-service-token-0123456789abcdef",
                                cors_origins=["https://viewer.example"])
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz", headers={"origin": "https://viewer.example"})
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert response.headers["access-control-allow-origin"] == "https://viewer.example"


def test_no_mode_accepts_a_missing_or_published_secret() -> None:
    for environment in ("development", "test", "production"):
        with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
            GatewaySettings(environment=environment, jwt_secret=None, service_token="x-0123456789abcdefghijklmnopqrstuvwxyz")
        with pytest.raises(ValidationError, match="SERVICE_TOKEN must be set"):
            GatewaySettings(environment=environment, jwt_secret="j-0123456789abcdefghijklmnopqrstuvwxyz", service_token=None)
        for published in (DEVELOPMENT_SECRET, "jwt-secret", "development-only-secret-change-me-please-0123456789"):
            with pytest.raises(ValidationError, match="published default|at least 32"):
                GatewaySettings(environment=environment, jwt_secret=published, service_token="x-0123456789abcdefghijklmnopqrstuvwxyz")
            with pytest.raises(ValidationError, match="published default|at least 32"):
                GatewaySettings(environment=environment, jwt_secret="j-0123456789abcdefghijklmnopqrstuvwxyz", service_token=published)
        with pytest.raises(ValidationError, match="not random"):
            GatewaySettings(environment=environment, jwt_secret="a" * 64, service_token="x-0123456789abcdefghijklmnopqrstuvwxyz")
        with pytest.raises(ValidationError, match="at least 32"):
            GatewaySettings(environment=environment, jwt_secret="short", service_token="x-0123456789abcdefghijklmnopqrstuvwxyz")
        with pytest.raises(ValidationError, match="must differ"):
            GatewaySettings(environment=environment, jwt_secret="x-0123456789abcdefghijklmnopqrstuvwxyz", service_token="x-0123456789abcdefghijklmnopqrstuvwxyz")
    assert GatewaySettings(environment="development", jwt_secret="j-0123456789abcdefghijklmnopqrstuvwxyz", service_token="x-0123456789abcdefghijklmnopqrstuvwxyz").jwt_key == "j-0123456789abcdefghijklmnopqrstuvwxyz"
