"""Token buckets for sign-in (per client IP and per account) and uploads (per caller): in process, or
in Redis when `redis_url` is set so that every gateway replica shares them."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from glioscope_common.metrics import count_degraded
from glioscope_gateway.auth.errors import RateLimited

logger = logging.getLogger("glioscope.gateway.ratelimit")


class Limiter(Protocol):
    def hit(self, key: str) -> None: ...

    def refund(self, key: str) -> None: ...


class TokenBucket:
    """`rate_per_min` tokens a minute, at most `burst` saved up; `hit` takes one or raises RateLimited."""

    def __init__(self, name: str, rate_per_min: float, burst: int, max_keys: int = 100_000) -> None:
        self.name = name
        self.rate = rate_per_min / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def hit(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"too many {self.name} requests; retry later", (1.0 - tokens) / self.rate)
            if key not in self._buckets and len(self._buckets) >= self._max_keys:
                self._evict(now)
            self._buckets[key] = (tokens - 1.0, now)

    def _evict(self, now: float) -> None:
        """Bound memory by forgetting the fullest half of the buckets (a full bucket is the default
        anyway). Limited keys, the emptiest, are forgotten last: flooding the limiter with new keys
        cannot reset an account or address that is being held back."""
        level = {k: min(self.burst, t + (now - last) * self.rate) for k, (t, last) in self._buckets.items()}
        for k in sorted(level, key=level.__getitem__, reverse=True)[: max(1, len(level) // 2)]:
            del self._buckets[k]

    def refund(self, key: str) -> None:
        """Give back the token a `hit` took (the attempt turned out not to count)."""
        with self._lock:
            if key in self._buckets:
                tokens, last = self._buckets[key]
                self._buckets[key] = (min(self.burst, tokens + 1.0), last)


_REDIS_SCRIPT = """
local data = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local now = tonumber(ARGV[3])
local tokens = tonumber(data[1]) or burst
local last = tonumber(data[2]) or now
tokens = math.min(burst, tokens + (now - last) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(tokens)}
"""

_REDIS_REFUND = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens then redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tonumber(ARGV[1]), tokens + 1))) end
return 1
"""


class RedisTokenBucket:
    """The same bucket in Redis (one Lua script, atomic). If Redis is down the in-process bucket holds the limit
    (per replica, so N replicas allow up to N times the rate): each such request is logged at warning level and
    counted in `glioscope_degraded_total{component="ratelimit_redis"}` (alert GlioscopeDegraded)."""

    def __init__(self, redis_url: str, name: str, rate_per_min: float, burst: int) -> None:
        import redis

        self.name = name
        self.rate = rate_per_min / 60.0
        self.burst = burst
        self._client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._script = self._client.register_script(_REDIS_SCRIPT)
        self._refund = self._client.register_script(_REDIS_REFUND)
        self._fallback = TokenBucket(name, rate_per_min, burst)

    def hit(self, key: str) -> None:
        try:
            allowed, tokens = self._script(keys=[f"glioscope:ratelimit:{self.name}:{key}"],
                                           args=[self.rate, self.burst, time.time()])
        except Exception as exc:
            self._degraded(exc)
            self._fallback.hit(key)
            return
        if not int(allowed):
            raise RateLimited(f"too many {self.name} requests; retry later", (1.0 - float(tokens)) / self.rate)

    def refund(self, key: str) -> None:
        try:
            self._refund(keys=[f"glioscope:ratelimit:{self.name}:{key}"], args=[self.burst])
        except Exception as exc:
            self._degraded(exc)
            self._fallback.refund(key)

    def _degraded(self, exc: Exception) -> None:
        count_degraded("ratelimit_redis")
        logger.warning("rate limiter %s: Redis unavailable (%s), the limit is per process until it is back",
                       self.name, type(exc).__name__)


def make_limiter(redis_url: str, name: str, rate_per_min: float, burst: int) -> Limiter:
    if redis_url:
        return RedisTokenBucket(redis_url, name, rate_per_min, burst)
    return TokenBucket(name, rate_per_min, burst)
