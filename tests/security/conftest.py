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

from glioscope_common.dev.orthanc import LocalOrthanc
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


class RunningApp:
    """An ASGI app served by uvicorn on a loopback port, as in production (no proxy-header rewriting)."""

    def __init__(self, app: object) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", proxy_headers=False,
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "RunningApp":
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def raw(self, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, bytes]:
        """Send `target` byte for byte (no client-side normalisation of dots or percent-encodings)."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            connection.putheader("content-length", str(len(body)))
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()
