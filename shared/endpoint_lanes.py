"""EndpointLanes: one lane per receiving endpoint (a tenant's scheme://host:port), so that one
slow or failing receiver never holds more than a few webhook worker processes.

A lane lets at most `concurrency` attempts run at once (one while the endpoint is failing);
deliveries beyond that wait in the lane, in Redis, not in the Celery queue. After a failure that
says the endpoint is unavailable (timeout, connection error, 5xx, 429) the lane is blocked until
that delivery's retry: only then do the waiting ones get their turn. Every pending delivery is, at
each moment, either in the due schedule or waiting in its lane, so nothing is lost when a worker
dies; a slot held by a dead worker lapses on its own."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import redis

from shared import keys
from shared.delivery_store import DELIVERY_TTL, LEASE_SECONDS
from shared.redis_client import text

HEALTHY = "healthy"  # a 2xx: the lane is open again
FAILING = "failing"  # the endpoint looks unavailable: one attempt at a time, blocked until a retry
NEUTRAL = "neutral"  # the endpoint answered (e.g. a 4xx about one payload): the lane stays as it is

# KEYS: slots, state. ARGV: now, limit. Returns how many more attempts may start now.
_ROOM = """
local function room(slots, state, now, limit)
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if tonumber(redis.call('HGET', state, 'blocked_until') or '0') > now then return 0 end
  if redis.call('HGET', state, 'failing') == '1' then limit = 1 end
  return limit - redis.call('ZCARD', slots)
end
"""

# KEYS: slots, state, waiting, due, lanes-waiting, delivery.
# ARGV: id, now, hold until, limit, lane, ttl, place in line (the delivery's creation time, so a
# retry waits ahead of newer deliveries). Returns 1 (go) or 0 (now waiting in the lane).
_ACQUIRE = (
    _ROOM
    + """
local now = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or room(KEYS[1], KEYS[2], now, tonumber(ARGV[4])) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  return 1
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[7], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('HSET', KEYS[6], 'next_attempt_at', '')
return 0
"""
)

# KEYS: slots, state, waiting, due, lanes-waiting. ARGV: now, lease until, limit, lane.
# Moves the oldest waiting deliveries into free slots, each leased in the due schedule.
_ADMIT = (
    _ROOM
    + """
local free = room(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[3]))
local admitted = {}
if free > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[3], free)
  for i = 1, #popped, 2 do
    redis.call('ZADD', KEYS[1], ARGV[2], popped[i])
    redis.call('ZADD', KEYS[4], ARGV[2], popped[i])
    admitted[#admitted + 1] = popped[i]
  end
end
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('SREM', KEYS[5], ARGV[4]) end
return admitted
"""
)

# KEYS: slots, state. ARGV: id, health, blocked until, ttl.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'healthy' then
  redis.call('HSET', KEYS[2], 'failing', '0', 'blocked_until', '0')
elseif ARGV[2] == 'failing' then
  local blocked = tonumber(redis.call('HGET', KEYS[2], 'blocked_until') or '0')
  redis.call('HSET', KEYS[2], 'failing', '1', 'blocked_until', math.max(blocked, tonumber(ARGV[3])))
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
"""


def lane_of(tenant: str, url: str) -> str:
    """The lane of a delivery: the tenant and the endpoint's scheme, host and port."""
    parts = urlsplit(url)
    endpoint = f"{tenant}\n{parts.scheme.lower()}://{parts.netloc.lower()}"
    return hashlib.sha256(endpoint.encode()).hexdigest()[:24]


def _queue_keys(lane: str) -> list[str]:
    """The keys ACQUIRE and ADMIT share: the lane's slots, state and waiting line, the due
    schedule, and the set of lanes with deliveries waiting."""
    return [
        keys.lane_slots(lane),
        keys.lane(lane),
        keys.lane_waiting(lane),
        keys.DELIVERIES_DUE,
        keys.LANES_WAITING,
    ]


class EndpointLanes:
    """Per-endpoint admission of delivery attempts, in Redis."""

    def __init__(self, conn: redis.Redis, *, concurrency: int) -> None:
        self.conn = conn
        self.concurrency = concurrency
        self._acquire = conn.register_script(_ACQUIRE)
        self._admit = conn.register_script(_ADMIT)
        self._release = conn.register_script(_RELEASE)

    def acquire(self, lane: str, delivery_id: str, hold_seconds: float, place: float) -> bool:
        """A slot for one attempt; False when the delivery now waits in its lane instead, at
        `place` (its creation time: older deliveries go first)."""
        now = time.time()
        got = self._acquire(
            keys=[*_queue_keys(lane), keys.delivery(delivery_id)],
            args=[
                delivery_id,
                now,
                now + hold_seconds,
                self.concurrency,
                lane,
                DELIVERY_TTL,
                place,
            ],
        )
        return bool(int(got))

    def release(self, lane: str, delivery_id: str, health: str, blocked_until: float = 0.0) -> None:
        """Free the attempt's slot and record what it said about the endpoint."""
        self._release(
            keys=[keys.lane_slots(lane), keys.lane(lane)],
            args=[delivery_id, health, blocked_until, DELIVERY_TTL],
        )

    def admit(self, lane: str) -> list[str]:
        """Waiting deliveries that may go now (leased: send each, or it is handed out again)."""
        now = time.time()
        ids = self._admit(
            keys=_queue_keys(lane),
            args=[now, now + LEASE_SECONDS, self.concurrency, lane],
        )
        return [text(i) for i in ids]

    def waiting_lanes(self) -> list[str]:
        """Lanes that hold waiting deliveries."""
        return [text(lane) for lane in self.conn.sscan_iter(keys.LANES_WAITING, count=1000)]

    def reopen(self, lane: str) -> None:
        """Forget the endpoint's failures (its owner says it is fixed): no block, full width."""
        self.conn.hset(keys.lane(lane), mapping={"failing": "0", "blocked_until": "0"})
