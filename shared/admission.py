"""Admission control: a token bucket per API key, and the global limit on images waiting for a
worker (SKUAI_MAX_QUEUED), reserved image by image so that it holds exactly under concurrent
uploads. Both answer 429 with a Retry-After."""

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

# Take `n` places among the images waiting, all or none: KEYS[1] the pending counter (the same
# counter a job's settling decrements), ARGV[1] n, ARGV[2] the limit. Returns the new count, or
# -1 when the places are not there.
_RESERVE = """
local n, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local pending = tonumber(redis.call('GET', KEYS[1]) or '0')
if pending + n > limit then return -1 end
return redis.call('INCRBY', KEYS[1], n)
"""

# Give back `n` places that were reserved and never became a waiting job.
_RELEASE = """
local left = redis.call('DECRBY', KEYS[1], tonumber(ARGV[1]))
if left < 0 then redis.call('SET', KEYS[1], 0) return 0 end
return left
"""


class Admission:
    """Decides whether a request may proceed."""

    def __init__(self, conn: redis.Redis, *, rate: float, burst: int, max_queued: int) -> None:
        self.conn = conn
        self.rate = rate
        self.burst = burst
        self.max_queued = max_queued
        self._take = conn.register_script(_TAKE_TOKEN)
        self._reserve = conn.register_script(_RESERVE)
        self._release = conn.register_script(_RELEASE)

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

    def reserve(self, count: int = 1) -> None:
        """Count `count` more images as waiting, or 429 when that would pass SKUAI_MAX_QUEUED.
        The caller stores them as jobs without counting them again, or `release`s them."""
        if int(self._reserve(keys=[keys.PENDING_IMAGES], args=[count, self.max_queued])) < 0:
            raise TooManyRequests(
                f"the service has {self.max_queued} images waiting; retry later",
                retry_after=QUEUE_FULL_RETRY_AFTER,
                code="queue_full",
            )

    def release(self, count: int = 1) -> None:
        """Give back places reserved for images that were not stored after all."""
        self._release(keys=[keys.PENDING_IMAGES], args=[count])
