"""Finding 7: X-Forwarded-For is believed only from GLIOSCOPE_TRUSTED_PROXIES, and sign-in is limited
per account as well as per address.

The gateway runs as a real uvicorn process started exactly as the local stack starts it
(`glioscope_common.dev.stack.uvicorn_command`, `--no-proxy-headers` as in the Dockerfiles and the chart),
against the real Orthanc. Requests come over real sockets from two loopback addresses: 127.0.0.1 (an
untrusted client; uvicorn's own proxy-header handling would believe it by default) and 127.0.0.2 (the
configured trusted proxy)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from glioscope_common.dev.orthanc import LocalOrthanc
from glioscope_common.dev.processes import free_port
from glioscope_common.dev.stack import ServiceProcess, uvicorn_command

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("xff-admin", "xff-admin-password-not-a-secret")
PROXY = "127.0.0.2"
CLIENT = "127.0.0.1"
ADMIN_PEER = "127.0.0.3"
ADDRESS_BURST = 3  # GLIOSCOPE_SIGNIN_BURST
ACCOUNT_BURST = 4  # GLIOSCOPE_SIGNIN_ACCOUNT_BURST


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, orthanc: LocalOrthanc) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("xff-gateway")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIOSCOPE_")}
    env.update({
        "GLIOSCOPE_ENVIRONMENT": "test",
        "GLIOSCOPE_DATABASE_URL": f"sqlite:///{tmp}/gateway.db",
        "GLIOSCOPE_BROKER_URL": f"sqla+sqlite:///{tmp}/broker.db",
        "GLIOSCOPE_DICOMWEB_URL": orthanc.dicomweb_url,
        "GLIOSCOPE_ORTHANC_URL": orthanc.url,
        **getattr(orthanc, "settings_env", {}),  # with its credentials where Orthanc asks for them
        "GLIOSCOPE_ORTHANC_WATCHER": "false",
        "GLIOSCOPE_UPLOAD_PROCESSES": "0",
        "GLIOSCOPE_JWT_SECRET": "xff-jwt-secret-not-a-secret-0123456789abcdef",
        "GLIOSCOPE_SERVICE_TOKEN": "xff-service-token-not-a-secret-0123456789abcdef",
        "GLIOSCOPE_BOOTSTRAP_ADMIN_USERNAME": ADMIN[0],
        "GLIOSCOPE_BOOTSTRAP_ADMIN_PASSWORD": ADMIN[1],
        # Slow refills: no bucket fills up again while the module runs.
        "GLIOSCOPE_SIGNIN_RATE_PER_MIN": "0.5",
        "GLIOSCOPE_SIGNIN_BURST": str(ADDRESS_BURST),
        "GLIOSCOPE_SIGNIN_ACCOUNT_RATE_PER_MIN": "0.5",
        "GLIOSCOPE_SIGNIN_ACCOUNT_BURST": str(ACCOUNT_BURST),
        "GLIOSCOPE_TRUSTED_PROXIES": f'["{PROXY}"]',
    })
    process = ServiceProcess("gateway", uvicorn_command("glioscope_gateway.main:create_app", port), env,
                             tmp / "gateway.log", f"http://127.0.0.1:{port}/healthz")
    process.start()
    try:
        process.wait_healthy(timeout_s=90)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def client_from(address: str, base_url: str) -> httpx.Client:
    """An HTTP client whose TCP connections come from `address` (any 127/8 address is loopback)."""
    return httpx.Client(base_url=base_url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def sign_in(client: httpx.Client, username: str, password: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for is not None else {}
    return client.post("/api/auth/token", data={"username": username, "password": password}, headers=headers)


@pytest.fixture(scope="module")
def admin_headers(gateway_url: str) -> dict[str, str]:
    with client_from(ADMIN_PEER, gateway_url) as client:
        response = sign_in(client, *ADMIN)
        assert response.status_code == 200, response.text
        return {"authorization": f"Bearer {response.json()['access_token']}"}


def audit_events(gateway_url: str, admin_headers: dict[str, str], actor: str) -> list[dict[str, object]]:
    with client_from(ADMIN_PEER, gateway_url) as client:
        response = client.get("/api/admin/audit", params={"actor": actor}, headers=admin_headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(gateway_url: str, admin_headers: dict[str, str]) -> None:
    """Every attempt claims another address; the limiter and the audit log see the socket's peer."""
    with client_from(CLIENT, gateway_url) as client:
        codes = [sign_in(client, f"forger-{i}", "wrong-password-123", forwarded_for=f"198.51.100.{i}").status_code
                 for i in range(ADDRESS_BURST + 1)]
    assert codes == [401] * ADDRESS_BURST + [429], codes
    for i in range(ADDRESS_BURST + 1):
        events = audit_events(gateway_url, admin_headers, f"forger-{i}")
        assert [(e["action"], e["client_ip"]) for e in events] == [("failed_sign_in", CLIENT)], events
    assert audit_events(gateway_url, admin_headers, f"forger-{ADDRESS_BURST}")[0]["outcome"] == "limited"


def test_the_trusted_proxys_forwarded_for_gives_the_client(gateway_url: str, admin_headers: dict[str, str]) -> None:
    """Behind the trusted proxy the client is the rightmost untrusted hop: the address the proxy saw,
    whatever the client put to its left; each client has its own bucket."""
    with client_from(PROXY, gateway_url) as proxy:
        codes = [sign_in(proxy, f"proxied-{i}", "wrong-password-123",
                         forwarded_for=f"10.9.9.{i}, 203.0.113.10").status_code
                 for i in range(ADDRESS_BURST + 1)]
        assert codes == [401] * ADDRESS_BURST + [429], codes
        # Another client behind the same proxy is not limited; a chain through the proxy itself
        # (trusted hops on the right) still finds the client.
        assert sign_in(proxy, "proxied-other", "wrong-password-123", forwarded_for="203.0.113.11").status_code == 401
        assert sign_in(proxy, "proxied-chain", "wrong-password-123",
                       forwarded_for=f"6.6.6.6, 203.0.113.12, {PROXY}").status_code == 401
        # Several header lines are one list, in order.
        response = proxy.post("/api/auth/token", data={"username": "proxied-lines", "password": "wrong-password-123"},
                              headers=[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.13")])
        assert response.status_code == 401
    for i in range(ADDRESS_BURST + 1):
        assert [e["client_ip"] for e in audit_events(gateway_url, admin_headers, f"proxied-{i}")] == ["203.0.113.10"]
    assert [e["client_ip"] for e in audit_events(gateway_url, admin_headers, "proxied-other")] == ["203.0.113.11"]
    assert [e["client_ip"] for e in audit_events(gateway_url, admin_headers, "proxied-chain")] == ["203.0.113.12"]
    assert [e["client_ip"] for e in audit_events(gateway_url, admin_headers, "proxied-lines")] == ["203.0.113.13"]


def test_failed_sign_ins_for_one_account_from_many_addresses_get_429(gateway_url: str,
                                                                     admin_headers: dict[str, str]) -> None:
    """Each attempt from a fresh address (no address bucket fills); spellings of one username share
    the account's bucket; the correct password is refused too once the account is limited."""
    spellings = ["victim", "Victim", " victim", "VICTIM", "ｖｉｃｔｉｍ", "victim "]
    with client_from(PROXY, gateway_url) as proxy:
        codes = [sign_in(proxy, spellings[i % len(spellings)], f"guess-{i}-password",
                         forwarded_for=f"192.0.2.{i + 1}").status_code for i in range(ACCOUNT_BURST + 2)]
        assert codes == [401] * ACCOUNT_BURST + [429, 429], codes
        limited = sign_in(proxy, "victim", "guess-x-password", forwarded_for="192.0.2.200")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"] == "rate_limited"
        # Another account from the same addresses is not affected.
        assert sign_in(proxy, "bystander", "guess-password-1", forwarded_for="192.0.2.1").status_code == 401
    # The audit keeps the name as typed: "victim" was tried first (refused) and last (limited).
    outcomes = [(e["action"], e["outcome"]) for e in audit_events(gateway_url, admin_headers, "victim")]
    assert outcomes == [("failed_sign_in", "denied"), ("failed_sign_in", "limited")], outcomes


def test_successful_sign_ins_do_not_spend_the_account_budget(gateway_url: str) -> None:
    with client_from(PROXY, gateway_url) as proxy:
        codes = [sign_in(proxy, *ADMIN, forwarded_for=f"192.0.2.{100 + i}").status_code
                 for i in range(ACCOUNT_BURST + 3)]
    assert codes == [200] * (ACCOUNT_BURST + 3), codes


def test_every_service_starts_uvicorn_without_proxy_headers() -> None:
    """The Dockerfiles, the chart and the local stack all pass --no-proxy-headers; nothing sets
    --forwarded-allow-ips (uvicorn would then rewrite the client before the gateway decides)."""
    commands = [ROOT / "services" / name / "Dockerfile" for name in ("gateway", "reporting", "nifti")]
    commands += [ROOT / "charts" / "glioscope" / "templates" / name / "deployment.yaml"
                 for name in ("gateway", "reporting", "nifti")]
    for path in commands:
        text = path.read_text()
        uvicorn_lines = [line for line in text.splitlines() if '"uvicorn"' in line]
        assert uvicorn_lines, path
        for line in uvicorn_lines:
            assert '"--no-proxy-headers"' in line, (path, line)
            assert not re.search(r'"--proxy-headers"|forwarded-allow-ips', line), (path, line)
    assert "--no-proxy-headers" in uvicorn_command("app:create_app", 8000)


@pytest.mark.parametrize("backend", ["in-process", "redis"])
def test_a_refund_gives_back_the_token_a_hit_took(backend: str, request: pytest.FixtureRequest) -> None:
    """The account bucket's refund (a successful sign-in), in process and in Redis (shared by replicas)."""
    import uuid

    from glioscope_gateway.auth.errors import RateLimited
    from glioscope_gateway.auth.ratelimit import make_limiter

    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else ""
    limiter = make_limiter(redis_url, f"test-account-{uuid.uuid4().hex[:8]}", 0.5, 2)
    for _ in range(10):  # hit + refund never runs the bucket dry
        limiter.hit("alice")
        limiter.refund("alice")
    limiter.hit("alice")
    limiter.hit("alice")
    with pytest.raises(RateLimited):
        limiter.hit("alice")
    limiter.refund("bob")  # a refund never creates tokens beyond the burst
    limiter.hit("bob")
    limiter.hit("bob")
    with pytest.raises(RateLimited):
        limiter.hit("bob")
