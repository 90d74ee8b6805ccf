"""Regression tests of the security findings (issue 18) against the real services.

`gw` re-exports the gateway tests' helpers (settings, sign-in, small studies) so that these tests
build the gateway exactly as the gateway's own tests do: in process, against a real Orthanc."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from glioscope_common.local_services import LocalOrthanc
from glioscope_gateway.main import create_app

ROOT = Path(__file__).resolve().parents[2]


def _load_gateway_helpers():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gateway_test_helpers", ROOT / "services" / "gateway" / "tests" / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gw = _load_gateway_helpers()


@pytest.fixture()
def secure_gateway(tmp_path: Path, orthanc: LocalOrthanc) -> Iterator[TestClient]:
    """The gateway in process against the real Orthanc, called with the bootstrap service key."""
    with TestClient(create_app(gw.gateway_settings(tmp_path, orthanc)), headers={"x-api-key": gw.SERVICE_KEY}) as client:
        yield client
