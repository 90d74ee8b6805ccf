"""Findings 2 and 3: no published default secret anywhere, and internal services believe only a signed,
short-lived identity (never headers); the service that writes audits the write."""

from __future__ import annotations

import importlib.util
import json
import stat
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from jose import jwt
from sqlalchemy import select

from glioscope_common.db import make_engine, make_session_factory, session_scope
from glioscope_common.internal_identity import bearer_header
from glioscope_common.records.access import AuditAction, AuditEvent
from glioscope_common.records.migrate import migrate
from glioscope_common.settings import DEVELOPMENT_SECRET

KEY = "security-test-internal-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parents[2]
STUDY = "1.2.826.0.1.3680043.8.498.424242"


def signed(audience: str, subject: str, role: str, key: str = KEY, issuer: str = "gateway") -> dict[str, str]:
    return bearer_header(key, audience=audience, subject=subject, role=role, issuer=issuer)


def forged_tokens(audience: str) -> dict[str, dict[str, str]]:
    """Every way of claiming to be a radiologist without the key, or with a token that is not fit."""
    now = int(time.time())
    base = {"iss": "gateway", "sub": "dr.mallory", "role": "radiologist", "aud": audience, "iat": now, "exp": now + 60}
    spoof = {"x-glioscope-user": "dr.mallory", "x-glioscope-role": "radiologist"}
    unsigned = jwt.encode(base, "", algorithm="HS256").rsplit(".", 1)[0]
    none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # {"alg":"none","typ":"JWT"}
    return {
        "headers only": spoof,
        "old shared default as bearer": {"authorization": f"Bearer {DEVELOPMENT_SECRET}", **spoof},
        "the key itself as bearer": {"authorization": f"Bearer {KEY}", **spoof},
        "signed with the published default": {"authorization": "Bearer " + jwt.encode(base, DEVELOPMENT_SECRET, algorithm="HS256")},
        "signed with another key": {"authorization": "Bearer " + jwt.encode(base, "x" * 40, algorithm="HS256")},
        "alg none": {"authorization": f"Bearer {none_header}.{unsigned.split('.', 1)[1]}."},
        "expired": {"authorization": "Bearer " + jwt.encode({**base, "iat": now - 600, "exp": now - 300}, KEY, algorithm="HS256")},
        "other audience": {"authorization": "Bearer " + jwt.encode({**base, "aud": "elsewhere"}, KEY, algorithm="HS256")},
        "no audience": {"authorization": "Bearer " + jwt.encode({k: v for k, v in base.items() if k != "aud"}, KEY, algorithm="HS256")},
        "a day long": {"authorization": "Bearer " + jwt.encode({**base, "exp": now + 86400}, KEY, algorithm="HS256")},
        "unknown role": {"authorization": "Bearer " + jwt.encode({**base, "role": "superuser"}, KEY, algorithm="HS256")},
    }


def audit_rows(database_url: str) -> list[tuple[str, str, str, str | None, str]]:
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return [(e.actor, e.role, e.action.value, e.study_instance_uid, e.outcome)
                    for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    finally:
        engine.dispose()


@pytest.fixture()
def reporting(tmp_path: Path):  # type: ignore[no-untyped-def]
    from glioscope_reporting.main import create_app
    from glioscope_reporting.settings import Settings

    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    settings = Settings(environment="test", database_url=url, service_token=KEY, store_on_sign=False)
    with TestClient(create_app(settings)) as client:
        yield client, url


def _payload() -> str:
    """A draft request as the worker sends it (the reporting tests' own example)."""
    spec = importlib.util.spec_from_file_location("reporting_test_helpers", ROOT / "services" / "reporting" / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.dumps(module.make_payload(study_instance_uid=STUDY, job_id="job-security"))


def test_reporting_believes_only_a_signed_identity(reporting) -> None:  # type: ignore[no-untyped-def]
    client, url = reporting
    worker = signed("reporting", "inference-worker", "service", issuer="worker")
    created = client.post("/api/reports", data={"payload": _payload()}, headers=worker)
    assert created.status_code == 201, created.text
    report = f"/api/reports/{created.json()['id']}"
    for name, headers in forged_tokens("reporting").items():
        for method, path, body in [("POST", f"{report}/sign", {}), ("PUT", f"{report}/sections/impression", {"text": "forged"}),
                                   ("GET", report, None), ("POST", "/api/reports", None)]:
            response = client.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (name, method, path, response.status_code, response.text)
    # A token for the NIfTI service is not one for reporting.
    assert client.post(f"{report}/sign", headers=signed("nifti", "dr.smith", "radiologist")).status_code == 401
    # The worker's valid identity with a radiologist's headers: still the worker, who may not sign or edit.
    spoofed = {**worker, "x-glioscope-user": "dr.mallory", "x-glioscope-role": "radiologist"}
    assert client.post(f"{report}/sign", headers=spoofed, json={}).status_code == 403
    assert client.put(f"{report}/sections/impression", headers=spoofed, json={"text": "x"}).status_code == 403
    # Researchers read no identified report; users may not draft reports (only the worker does); clinicians may not sign.
    assert client.get(report, headers=signed("reporting", "res", "researcher")).status_code == 403
    assert client.post("/api/reports", data={"payload": _payload()}, headers=signed("reporting", "dr.smith", "radiologist")).status_code == 403
    assert client.post(f"{report}/sign", headers=signed("reporting", "dr.jones", "clinician"), json={}).status_code == 403
    # A real radiologist signs; the signature names the verified subject.
    done = client.post(f"{report}/sign", headers=signed("reporting", "dr.smith", "radiologist"), json={})
    assert done.status_code == 200, done.text
    assert done.json()["signature"]["signed_by"] == "dr.smith" and done.json()["status"] == "final"
    assert client.get(report, headers=signed("reporting", "dr.smith", "radiologist")).json()["status"] == "final"
    rows = audit_rows(url)
    assert ("inference-worker", "service", AuditAction.created.value, STUDY, "ok") in rows
    assert ("dr.smith", "radiologist", AuditAction.signed.value, STUDY, "ok") in rows
    # A refused sign-off reached the service and is on its record.
    assert ("dr.jones", "clinician", AuditAction.signed.value, None, "denied") in rows
    assert not any(r[0] == "dr.mallory" for r in rows)


def test_nifti_believes_only_a_signed_identity(tmp_path: Path) -> None:
    import gzip

    import nibabel as nib
    import numpy as np

    from glioscope_nifti.main import create_app
    from glioscope_nifti.settings import Settings

    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    settings = Settings(environment="test", nifti_root=tmp_path / "dataset", database_url=url, service_token=KEY)
    path = "/api/nifti/files/derivatives/glioscope/sub-01/ses-01/anat/sub-01_ses-01_desc-tumor_dseg.nii.gz"
    body = gzip.compress(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_bytes())
    with TestClient(create_app(settings)) as client:
        for name, headers in forged_tokens("nifti").items():
            for method in ("PUT", "GET", "DELETE"):
                response = client.request(method, path, headers=headers, content=body if method == "PUT" else None)
                assert response.status_code == 401, (name, method, response.status_code, response.text)
        # The gateway reads on behalf of users; only the worker (service) or an admin writes.
        radiologist = signed("nifti", "dr.smith", "radiologist")
        assert client.put(path, headers=radiologist, content=body).status_code == 403
        worker = signed("nifti", "inference-worker", "service", issuer="worker")
        stored = client.put(path, headers=worker, content=body)
        assert stored.status_code == 201, stored.text
        assert client.get(path, headers=radiologist).status_code == 200
        assert client.delete(path, headers=radiologist).status_code == 403
        assert client.delete(path, headers=signed("nifti", "admin-1", "admin")).status_code == 204
    rows = audit_rows(url)
    assert rows == [("inference-worker", "service", "created", None, "ok"), ("admin-1", "admin", "deleted", None, "ok")]


def test_a_write_that_cannot_be_audited_says_so(tmp_path: Path) -> None:
    """No audit table: the write is answered 503, not silently accepted as audited."""
    import gzip

    import nibabel as nib
    import numpy as np

    from glioscope_nifti.main import create_app
    from glioscope_nifti.settings import Settings

    settings = Settings(environment="test", nifti_root=tmp_path / "dataset", database_url=f"sqlite:///{tmp_path / 'empty.db'}",
                        service_token=KEY)
    body = gzip.compress(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_bytes())
    with TestClient(create_app(settings)) as client:
        response = client.put("/api/nifti/files/sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz", content=body,
                              headers=signed("nifti", "inference-worker", "service", issuer="worker"))
        assert response.status_code == 503 and "audited" in response.json()["detail"], response.text


def test_make_run_generates_its_own_secrets(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("run_platform_under_test", ROOT / "scripts" / "run_platform.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.embedded_env(tmp_path / "var")
    again = module.embedded_env(tmp_path / "var")
    other = module.embedded_env(tmp_path / "other-var")
    for name in ("GLIOSCOPE_JWT_SECRET", "GLIOSCOPE_SERVICE_TOKEN"):
        assert len(first[name]) >= 32 and first[name] not in (DEVELOPMENT_SECRET,)
        assert again[name] == first[name]  # kept across restarts
        assert other[name] != first[name]  # another installation, other keys
    assert first["GLIOSCOPE_JWT_SECRET"] != first["GLIOSCOPE_SERVICE_TOKEN"]
    for name in ("jwt-secret", "service-token"):
        mode = stat.S_IMODE((tmp_path / "var" / name).stat().st_mode)
        assert mode == 0o600, oct(mode)
    from glioscope_gateway.settings import GatewaySettings

    settings = GatewaySettings(jwt_secret=first["GLIOSCOPE_JWT_SECRET"], service_token=first["GLIOSCOPE_SERVICE_TOKEN"])
    assert settings.jwt_key == first["GLIOSCOPE_JWT_SECRET"]


def test_the_gateway_refuses_tokens_minted_with_a_published_key(secure_gateway: TestClient) -> None:
    """The original finding: an admin token minted on the host with the shipped default secret."""
    from glioscope_common.records.access import Role
    from glioscope_gateway.auth.tokens import ACCESS, LocalTokens

    from .conftest import gw

    admin = gw.bearer(gw.sign_in(secure_gateway, gw.ADMIN_USERNAME, gw.ADMIN_PASSWORD)["access_token"])
    assert secure_gateway.get("/api/admin/users", headers=admin).status_code == 200
    for published in (DEVELOPMENT_SECRET, "jwt-secret-0123456789abcdef0123456789", KEY):
        forged = LocalTokens(published, 900, 3600).issue(ACCESS, gw.ADMIN_USERNAME, Role.admin, None).token
        response = secure_gateway.get("/api/admin/users", headers=gw.bearer(forged))
        assert response.status_code == 401, response.text
