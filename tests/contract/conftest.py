"""The gateway (against a real Orthanc) and the NIfTI service, in process, for the contract tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_gateway.main import create_app
from glioscope_gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
SERVICE_KEY = "gsk_contract-service-key-0123456789abcdef"
ADMIN = ("contract-admin", "contract-admin-password-123")
NIFTI_TOKEN = "contract-nifti-key-0123456789abcdef0123456789"


def load_make_cases():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bad_make_cases", ROOT / "tests" / "data" / "bad" / "make_cases.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def contract_settings(tmp: Path, orthanc: LocalOrthanc, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = dict(
        environment="test",
        database_url=f"sqlite:///{tmp}/gateway.db",
        broker_url=f"sqla+sqlite:///{tmp}/broker.db",
        **orthanc.settings_values,  # URLs and credentials
        orthanc_watcher=False,
        max_upload_bytes=1024 * 1024,
        max_zip_uncompressed_bytes=32 * 1024 * 1024,
        jwt_secret="contract-jwt-secret-0123456789abcdef0123",
        bootstrap_admin_username=ADMIN[0],
        bootstrap_admin_password=ADMIN[1],
        bootstrap_api_key=SERVICE_KEY,
        upload_burst=10_000,
        signin_burst=10_000,
    )
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def contract_gateway(tmp_path_factory: pytest.TempPathFactory, orthanc: LocalOrthanc) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("contract-gateway")
    with TestClient(create_app(contract_settings(tmp, orthanc)), headers={"x-api-key": SERVICE_KEY}) as client:
        yield client


@pytest.fixture(scope="module")
def nifti_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    from glioscope_nifti.main import create_app as create_nifti
    from glioscope_nifti.settings import Settings

    from glioscope_common.internal_identity import bearer_header
    from glioscope_common.records.migrate import migrate

    root = tmp_path_factory.mktemp("contract-nifti") / "dataset"
    records = f"sqlite:///{tmp_path_factory.mktemp('contract-records') / 'records.db'}"
    migrate(records)  # the audit table the service writes to
    settings = Settings(environment="test", nifti_root=root, service_token=NIFTI_TOKEN, database_url=records)
    worker = bearer_header(NIFTI_TOKEN, audience="nifti", subject="inference-worker", role="service", issuer="worker",
                           ttl_s=3600)
    with TestClient(create_nifti(settings), headers=worker) as client:
        yield client, root
