"""Admission control: a token bucket per API key, and the global limit on images waiting for a
worker (SKUAI_MAX_QUEUED), whose places uploads reserve before they store jobs so that it holds
exactly under concurrent uploads. Both answer 429 with a Retry-After."""

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

RESERVATION_TTL = 600  # seconds a reservation outlives the last image its upload stored

# Reserve `n` places for `holder`, all or none: the images waiting (KEYS[1], the counter a job's
# settling decrements) plus every live reservation (KEYS[2] holder -> places, KEYS[3] holder ->
# when it lapses) may not pass the limit. ARGV: holder, n, limit, now, ttl. Returns the places
# taken in all, or -1 when they are not there.
_RESERVE = """
local holder, n, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, gone in ipairs(lapsed) do redis.call('HDEL', KEYS[2], gone) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
for _, places in ipairs(redis.call('HVALS', KEYS[2])) do
  taken = taken + math.max(0, tonumber(places))
end
if taken + n > limit then return -1 end
redis.call('HINCRBY', KEYS[2], holder, n)
redis.call('ZADD', KEYS[3], now + ttl, holder)
return taken + n
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

    def reserve(self, count: int, holder: str, ttl: float = RESERVATION_TTL) -> None:
        """Reserve `count` places for `holder` (an upload), or 429 when the images waiting and
        the places already reserved leave no room under SKUAI_MAX_QUEUED. Each job an upload
        stores uses one (INSERT in shared/store_scripts.py); `release` gives back the rest; an
        upload whose process died gives them back by itself `ttl` s after its last image."""
        reply = self._reserve(
            keys=[keys.PENDING_IMAGES, keys.QUEUE_RESERVATIONS, keys.QUEUE_RESERVATIONS_DUE],
            args=[holder, count, self.max_queued, time.time(), ttl],
        )
        if int(reply) < 0:
            raise TooManyRequests(
                f"the service has {self.max_queued} images waiting; retry later",
                retry_after=QUEUE_FULL_RETRY_AFTER,
                code="queue_full",
            )

    def release(self, holder: str) -> None:
        """Give back what is left of `holder`'s reservation (its upload is over)."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.QUEUE_RESERVATIONS, holder)
            pipe.zrem(keys.QUEUE_RESERVATIONS_DUE, holder)
            pipe.execute()
