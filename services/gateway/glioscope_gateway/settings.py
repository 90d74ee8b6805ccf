from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from glioscope_common.settings import CommonSettings, check_secret
from glioscope_gateway.routing.config import Destination, ProcessingRule


class GatewaySettings(CommonSettings):
    """Gateway settings (env prefix GLIOSCOPE_). URLs of the other services come from CommonSettings."""

    max_upload_bytes: int = Field(1024**3, gt=0)
    # Upload bytes one gateway process holds at once (studies/admission.py): the pod's memory grows
    # by about 5.3 bytes per upload byte; beyond the budget uploads get 503 with Retry-After.
    upload_budget_bytes: int = Field(2 * 1024**3, gt=0)
    # STOW-RS requests to the PACS in flight at once during an upload.
    stow_concurrency: int = 3
    # Processes that validate and store uploads (studies/ingest_pool.py), at this niceness; 0: in
    # the gateway's own threads (parsing there slows every other request of the process).
    upload_processes: int = Field(2, ge=0, le=32)
    upload_nice: int = Field(5, ge=0, le=19)
    max_files_per_upload: int = 5000
    max_zip_members: int = 5000
    max_zip_uncompressed_bytes: int = 4 * 1024**3
    max_zip_ratio: float = 100.0  # uncompressed / compressed, per member and overall: beyond it is a zip bomb
    # Queue the segmentation task goes to ("cpu" with in-process onnxruntime, "gpu" next to Triton).
    job_queue: str = "cpu"
    # Watch Orthanc's change feed so that studies sent by STOW-RS or C-STORE directly get a job.
    # Every replica may run it: with Postgres one leader works (glioscope_gateway.leader, an advisory
    # lock); with SQLite the process leads alone (run exactly one watcher there).
    orthanc_watcher: bool = True
    orthanc_watch_interval_s: float = 2.0
    # Leader election: followers try the lock and the leader sends a heartbeat every poll; Postgres ends a
    # leader's session silent for the lease. Hand-over: <= poll after the leader's process ends,
    # <= lease + poll after it hangs or its node is lost (docs/deploy.md, "Observability").
    watcher_leader_poll_s: float = 2.0
    watcher_leader_lease_s: float = 10.0
    # A job still queued this long after creation is enqueued again (the broker may have lost it).
    requeue_after_s: float = 300.0
    frontend_dist: Path | None = None
    # Run the records' migrations at start (the embedded configuration); in Kubernetes a Job does it.
    auto_migrate: bool = True

    # -- access control (docs/security.md) -----------------------------------------------------
    # HS256 key of the gateway's own access and refresh tokens: required in every mode, at least 32
    # random characters (`make run` generates one; published defaults are refused).
    jwt_secret: SecretStr | None = None
    access_token_ttl_s: int = Field(15 * 60, gt=0)
    refresh_token_ttl_s: int = Field(12 * 3600, gt=0)
    # An external OpenID Connect provider (RS256 tokens, keys from its JWKS URL, cached).
    oidc_jwks_url: str = ""
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_role_claim: str = "roles"  # a string or a list; the first Glioscope role found wins
    oidc_projects_claim: str = "projects"
    oidc_username_claim: str = "preferred_username"
    oidc_jwks_cache_s: float = Field(300.0, gt=0)
    # While the identity provider is unreachable, keys from the last successful fetch are used for at most
    # this long after that fetch; older ones are refused (fail closed: 401 for OIDC tokens).
    oidc_jwks_max_age_s: float = Field(3600.0, gt=0)
    # Seconds a verified API key is remembered (no database lookup); a key revoked on another
    # replica is still accepted here for at most this long. 0: look it up on every request.
    api_key_cache_s: float = Field(10.0, ge=0)
    # First start: create this admin when no user exists; register this service API key.
    bootstrap_admin_username: str = ""
    bootstrap_admin_password: SecretStr | None = None
    bootstrap_api_key: SecretStr | None = None
    # Where studies without an uploader's project go (direct sends to Orthanc, the service key's uploads).
    default_project: str = "default"
    # Token buckets: sign-in per client IP, uploads per caller (in-process; Redis when redis_url is set).
    signin_rate_per_min: float = Field(10.0, gt=0)
    signin_burst: int = Field(5, gt=0)
    # Sign-in per account (the normalised username), whatever the address: failed attempts only (a
    # successful sign-in gives its token back), so guessing one account's password from many
    # addresses gets 429 too.
    signin_account_rate_per_min: float = Field(5.0, gt=0)
    signin_account_burst: int = Field(10, gt=0)
    upload_rate_per_min: float = Field(30.0, gt=0)
    upload_burst: int = Field(10, gt=0)
    # Browser origins allowed by CORS; empty (the default): no CORS at all (the frontend is same-origin).
    cors_origins: list[str] = []
    # Reverse proxies (IP addresses or CIDR ranges: the ingress controller's pods) whose
    # X-Forwarded-For is believed (client_address.py). Empty (the default): the TCP peer is the
    # client and X-Forwarded-For is ignored. uvicorn runs with --no-proxy-headers: only this decides.
    trusted_proxies: list[str] = []

    # -- result routing and processing rules (glioscope_gateway.routing; docs/deploy.md) ----------------
    # Where SEG, SR and the Encapsulated PDF go (JSON list of Destination); empty (the default): nowhere else.
    destinations: list[Destination] = []
    # Retries of a failed delivery: routing_retry_base_s, doubled per attempt up to routing_retry_max_s;
    # after routing_max_attempts it is left failed (listed for an admin, who may resend it).
    routing_retry_base_s: float = Field(30.0, gt=0)
    routing_retry_max_s: float = Field(3600.0, gt=0)
    routing_max_attempts: int = Field(10, ge=1)
    routing_interval_s: float = Field(5.0, gt=0)
    # Which studies that reach the PACS directly (C-STORE, STOW-RS) are segmented (JSON list of ProcessingRule);
    # empty (the default): every segmentable study. Uploads through the gateway are always segmented.
    processing_rules: list[ProcessingRule] = []

    @field_validator("destinations")
    @classmethod
    def _unique_destination_names(cls, value: list[Destination]) -> list[Destination]:
        names = [d.name for d in value]
        if len(names) != len(set(names)):
            raise ValueError("GLIOSCOPE_DESTINATIONS: destination names must be unique")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        try:
            return [str(ip_network(entry.strip(), strict=False)) for entry in value]
        except ValueError as exc:
            raise ValueError(f"GLIOSCOPE_TRUSTED_PROXIES: {exc}") from exc

    @property
    def jwt_key(self) -> str:
        assert self.jwt_secret is not None  # checked by the validator
        return self.jwt_secret.get_secret_value()

    @model_validator(mode="after")
    def _refuse_default_jwt_secret(self) -> "GatewaySettings":
        check_secret("GLIOSCOPE_JWT_SECRET", self.jwt_secret)
        if self.jwt_secret == self.service_token:
            raise ValueError("GLIOSCOPE_JWT_SECRET and GLIOSCOPE_SERVICE_TOKEN must differ")
        if bool(self.bootstrap_admin_username) != (self.bootstrap_admin_password is not None):
            raise ValueError("set both GLIOSCOPE_BOOTSTRAP_ADMIN_USERNAME and GLIOSCOPE_BOOTSTRAP_ADMIN_PASSWORD, or neither")
        if self.upload_budget_bytes < self.max_upload_bytes:
            raise ValueError("GLIOSCOPE_UPLOAD_BUDGET_BYTES must be at least GLIOSCOPE_MAX_UPLOAD_BYTES")
        if self.oidc_jwks_url and not (self.oidc_issuer and self.oidc_audience):
            raise ValueError("GLIOSCOPE_OIDC_JWKS_URL needs GLIOSCOPE_OIDC_ISSUER and GLIOSCOPE_OIDC_AUDIENCE")
        return self
