"""Admission control: a token bucket per API key, and the global limit on images waiting for a
worker (SKUAI_MAX_QUEUED). Both answer 429 with a Retry-After."""

from __future__ import annotations

import time

import redis

from shared import keys
from shared.errors import TooManyRequests
from shared.redis_client import text

QUEUE_FULL_RETRY_AFTER = 30.0

_TAKE_TOKEN = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class Admission:
    """Decides whether a request may proceed."""

    def __init__(self, conn: redis.Redis, *, rate: float, burst: int, max_queued: int) -> None:
        self.conn = conn
        self.rate = rate
        self.burst = burst
        self.max_queued = max_queued
        self._take = conn.register_script(_TAKE_TOKEN)

    def take_token(self, key_digest: str) -> None:
        """One request of this key; 429 when its bucket is empty."""
        wait = float(
            text(
                self._take(
                    keys=[keys.rate_bucket(key_digest)], args=[self.rate, self.burst, time.time()]
                )
            )
        )
        if wait > 0:
            raise TooManyRequests(
                f"rate limit of {self.rate:g} requests/s per API key reached", retry_after=wait
            )

    def pending(self) -> int:
        """Images accepted and not finished yet."""
        return int(self.conn.get(keys.PENDING_IMAGES) or 0)

    def check_room(self, incoming: int = 1) -> None:
        """429 when `incoming` more images would pass SKUAI_MAX_QUEUED."""
        if self.pending() + incoming > self.max_queued:
            raise TooManyRequests(
                f"the service has {self.max_queued} images waiting; retry later",
                retry_after=QUEUE_FULL_RETRY_AFTER,
                code="queue_full",
            )
