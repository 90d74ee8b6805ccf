"""Tokens of an external OpenID Connect provider: RS256, keys from its JWKS URL (served here by a tiny
HTTP server, with an RSA key made in the test), cached."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwk, jwt

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_gateway.main import create_app

from .conftest import bearer, gateway_settings

pytestmark = pytest.mark.services

ISSUER = "https://idp.example/realms/glioscope"
AUDIENCE = "glioscope-api"


class Jwks:
    def __init__(self) -> None:
        self.fetches = 0
        self.keys: list[dict] = []
        self.down = False  # the provider answers 503


def rsa_key(kid: str) -> tuple[str, dict]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    public = jwk.construct(public_pem, "RS256").to_dict()
    public.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return pem, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items()}


@pytest.fixture()
def jwks_server() -> Iterator[tuple[str, Jwks]]:
    state = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            state.fetches += 1
            body = json.dumps({"keys": state.keys}).encode()
            if state.down:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/certs", state
    finally:
        server.shutdown()


def token(pem: str, kid: str, **claims: object) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "preferred_username": "dr.who", "iat": now,
               "exp": now + 300, "roles": ["offline_access", "radiologist"], "projects": ["alpha"], **claims}
    return jwt.encode(payload, pem, algorithm="RS256", headers={"kid": kid})


def test_oidc_tokens(tmp_path: Path, orthanc: LocalOrthanc, jwks_server: tuple[str, Jwks]) -> None:
    url, state = jwks_server
    pem, public = rsa_key("key-1")
    state.keys = [public]
    settings = gateway_settings(tmp_path, orthanc, oidc_jwks_url=url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    with TestClient(create_app(settings)) as client:
        me = client.get("/api/auth/me", headers=bearer(token(pem, "key-1")))
        assert me.status_code == 200, me.text
        assert me.json() == {"subject": "oidc:dr.who", "role": "radiologist", "projects": ["alpha"], "kind": "oidc",
                             "deidentified": False}
        for _ in range(3):
            assert client.get("/api/studies", headers=bearer(token(pem, "key-1"))).status_code == 200
        assert state.fetches == 1  # cached

        def detail(t: str) -> tuple[int, str]:
            response = client.get("/api/auth/me", headers=bearer(t))
            return response.status_code, response.json()["detail"]

        assert detail(token(pem, "key-1", aud="another-api")) == (401, "invalid token")
        assert detail(token(pem, "key-1", iss="https://evil.example")) == (401, "invalid token")
        assert detail(token(pem, "key-1", exp=int(time.time()) - 60)) == (401, "token expired")
        assert detail(token(pem, "key-1", roles=["offline_access"]))[0] == 403
        assert client.get("/api/auth/me", headers=bearer(token(pem, "key-1", roles="researcher"))).json()["deidentified"]
        # A key the provider does not publish; then key rotation: the JWKS is fetched again.
        other_pem, other_public = rsa_key("key-2")
        assert detail(token(other_pem, "key-1")) == (401, "invalid token")
        state.keys = [public, other_public]
        client.app.state.container.auth.oidc.min_refetch_s = 0  # type: ignore[attr-defined]
        assert client.get("/api/auth/me", headers=bearer(token(other_pem, "key-2"))).status_code == 200
        assert state.fetches == 2
        # Algorithm confusion: an HS256 token "signed" with the public key is not accepted.
        public_pem = json.dumps(public)
        forged = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "roles": ["admin"], "exp": int(time.time()) + 60},
                            public_pem, algorithm="HS256", headers={"kid": "key-1"})
        assert client.get("/api/auth/me", headers=bearer(forged)).status_code == 401


def test_kept_keys_expire_while_the_provider_is_unreachable(jwks_server: tuple[str, Jwks]) -> None:
    """The provider goes down: the last keys are used (counted, logged) up to max_age_s after their fetch, then
    every OIDC token is refused until the provider is back. Catches a verifier that keeps keys forever."""
    from prometheus_client import REGISTRY

    from glioscope_common.errors import Unauthorized
    from glioscope_gateway.auth.tokens import OidcVerifier

    def degraded() -> float:
        return REGISTRY.get_sample_value("glioscope_degraded_total", {"component": "oidc_jwks_stale"}) or 0.0

    url, state = jwks_server
    pem, public = rsa_key("key-1")
    state.keys = [public]
    verifier = OidcVerifier(url, ISSUER, AUDIENCE, cache_s=60, max_age_s=600)
    assert verifier.principal(token(pem, "key-1")).role.value == "radiologist"
    state.down = True
    verifier._fetched_at -= 120  # the cache has expired: a refetch is due and fails
    before = degraded()
    assert verifier.principal(token(pem, "key-1")).subject == "oidc:dr.who"  # kept keys, 120 s old
    assert degraded() == before + 1
    verifier._fetched_at -= 600  # now older than max_age_s
    with pytest.raises(Unauthorized, match="keys are unavailable"):
        verifier.principal(token(pem, "key-1"))
    with pytest.raises(Unauthorized):  # and stays refused, not served from the old keys again
        verifier.principal(token(pem, "key-1"))
    state.down = False  # the provider is back: accepted again
    assert verifier.principal(token(pem, "key-1")).role.value == "radiologist"
