"""The Redis-backed limiter: shared through Redis, and when Redis fails, held per process, visibly (a warning
and `glioscope_degraded_total{component="ratelimit_redis"}`), never silently."""

from __future__ import annotations

import logging
import socket

import pytest
from prometheus_client import REGISTRY

from glioscope_gateway.auth.errors import RateLimited
from glioscope_gateway.auth.ratelimit import RedisTokenBucket


def degraded() -> float:
    return REGISTRY.get_sample_value("glioscope_degraded_total", {"component": "ratelimit_redis"}) or 0.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_redis_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Catches a limiter that falls back to the in-process bucket without a metric (the issue 23 finding)."""
    limiter = RedisTokenBucket(f"redis://127.0.0.1:{closed_port()}/0", "sign-in", rate_per_min=1, burst=2)
    before = degraded()
    with caplog.at_level(logging.WARNING, logger="glioscope.gateway.ratelimit"):
        limiter.hit("10.0.0.1")
        limiter.hit("10.0.0.1")
        with pytest.raises(RateLimited):  # the per-process bucket still limits
            limiter.hit("10.0.0.1")
    assert degraded() == before + 3
    assert any("per process" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.services
def test_redis_holds_the_limit_without_degrading(redis_url: str) -> None:
    first = RedisTokenBucket(redis_url, "sign-in-test", rate_per_min=1, burst=2)
    second = RedisTokenBucket(redis_url, "sign-in-test", rate_per_min=1, burst=2)  # another replica
    before = degraded()
    first.hit("10.0.0.2")
    second.hit("10.0.0.2")
    with pytest.raises(RateLimited):
        first.hit("10.0.0.2")
    assert degraded() == before
