"""Long-poll slots: how many `?wait=` requests one API key holds open at once. Past
SKUAI_MAX_WAITS_PER_KEY the next one gets 429. Counted in Redis, so all API processes share it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from shared import keys
from shared.errors import TooManyRequests

# A slot outlives its wait by this much before it lapses on its own (its process died).
SLOT_GRACE_SECONDS = 30.0


class LongPolls:
    """Hands out one slot per waiting request of an API key."""

    def __init__(self, conn: redis.Redis, *, per_key: int) -> None:
        self.conn = conn
        self.per_key = per_key

    @contextmanager
    def slot(self, key_digest: str, seconds: float) -> Iterator[None]:
        """Hold a slot for a wait of `seconds`; 429 when the key already holds all of them."""
        name, token, now = keys.long_polls(key_digest), uuid.uuid4().hex, time.time()
        pipe = self.conn.pipeline(transaction=True)
        pipe.zremrangebyscore(name, "-inf", now)  # slots of waits whose process died
        pipe.zadd(name, {token: now + seconds + SLOT_GRACE_SECONDS})
        pipe.zcard(name)
        pipe.zrange(name, 0, 0, withscores=True)
        pipe.expire(name, int(seconds + SLOT_GRACE_SECONDS) + 1)
        _, _, held, oldest, _ = pipe.execute()
        try:
            if held > self.per_key:
                ends = oldest[0][1] - SLOT_GRACE_SECONDS if oldest else now + 1
                raise TooManyRequests(
                    f"this API key already has {self.per_key} long polls (?wait=) open; "
                    "retry when one ends, or poll without wait",
                    retry_after=ends - now,
                    code="too_many_waits",
                )
            yield
        finally:
            self.conn.zrem(name, token)
