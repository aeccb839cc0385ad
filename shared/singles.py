"""SinglesQueue: single-image jobs wait here so a worker can take many of them into one forward
pass (dynamic batching). Each job still gets its own task message, so none is left behind; a
worker leases what it takes, and a lease that expires (its worker vanished) puts the jobs back."""

from __future__ import annotations

import time

import redis

from shared import keys
from shared.redis_client import text

PENDING = f"{keys.NAMESPACE}:singles"
LEASED = f"{keys.NAMESPACE}:singles:leased"

_TAKE = """
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then
  redis.call('LTRIM', KEYS[1], #ids, -1)
  for _, id in ipairs(ids) do redis.call('ZADD', KEYS[2], ARGV[2], id) end
end
return ids
"""

_RECLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('RPUSH', KEYS[1], id)
end
return #ids
"""


class SinglesQueue:
    """Pending single-image jobs and the leases of the ones being classified."""

    def __init__(self, conn: redis.Redis, *, lease_seconds: float) -> None:
        self.conn = conn
        self.lease_seconds = lease_seconds
        self._take = conn.register_script(_TAKE)
        self._reclaim = conn.register_script(_RECLAIM)

    def push(self, job_id: str) -> None:
        """A new single-image job waits for a worker."""
        self.conn.rpush(PENDING, job_id)

    def take(self, limit: int) -> list[str]:
        """Up to `limit` waiting jobs, leased to the caller."""
        ids = self._take(keys=[PENDING, LEASED], args=[limit, time.time() + self.lease_seconds])
        return [text(i) for i in ids]

    def release(self, job_ids: list[str]) -> None:
        """The jobs are finished: drop their leases."""
        if job_ids:
            self.conn.zrem(LEASED, *job_ids)

    def reclaim(self) -> int:
        """Put jobs whose lease expired back in line; returns how many."""
        return int(self._reclaim(keys=[PENDING, LEASED], args=[time.time()]))
