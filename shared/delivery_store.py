"""DeliveryStore: webhook deliveries and their attempts, and the schedule of (re)tries.

Pending deliveries live in Redis, never in process memory: a sorted set holds when each is due,
and new ones wait in their endpoint's lane (shared/endpoint_lanes.py). Handing a due delivery to a
worker only *leases* it (its due time moves a little ahead), so one taken by a worker that dies is
handed out again: delivery is at-least-once."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys
from shared.jobs import utc_now
from shared.redis_client import text

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
SKIPPED = "skipped"
LEASE_SECONDS = 120.0  # longer than one attempt (request timeout included)
LOG_LENGTH = 1000  # deliveries kept in a subscription's log
DELIVERY_TTL = 30 * 24 * 3600

POP_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

# KEYS: delivery, its subscription's log, lane waiting, lanes-waiting.
# ARGV: ttl, log length ('' for none), lane ('' for none: settled already), id, place in the lane,
# field/value pairs.
# Creates the delivery unless it exists (a fan-out run twice adds nothing); 1 when created.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[4])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[1])
  redis.call('SADD', KEYS[4], ARGV[3])
end
return 1
"""


@dataclass
class Delivery:
    """One event for one URL; `id` is also the `webhook-id` header, the same on every retry."""

    id: str
    tenant: str
    url: str
    event_type: str
    body: str
    webhook_id: str | None = None  # None: a job's or batch's callback_url
    status: str = PENDING
    attempts: int = 0
    created_at: str = field(default_factory=utc_now)
    next_attempt_at: float | None = None
    last_error: str | None = None

    def to_public(self, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        """The delivery as the API's delivery log shows it."""
        return {
            "id": self.id,
            "event_type": self.event_type,
            "url": self.url,
            "status": self.status,
            "created_at": self.created_at,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "attempts": attempts,
        }


def delivery_id_for(event_type: str, subject: str, target: str) -> str:
    """A Standard Webhooks message id: one per event type, job or batch, and target, so a
    fan-out run again, or two events that overlap, never deliver one thing twice."""
    digest = hashlib.sha256(f"{event_type}\n{subject}\n{target}".encode()).hexdigest()
    return "msg_" + digest[:32]


class DeliveryStore:
    """Deliveries, attempts and the due schedule in Redis."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        self._pop_due = conn.register_script(POP_DUE)
        self._add = conn.register_script(_ADD)

    def add_many(self, deliveries: list[tuple[Delivery, str | None]]) -> int:
        """Store (delivery, lane) pairs: pending ones wait in their lane, the others are logged
        as they are. One that exists already is left alone; returns how many were new."""
        now = time.time()
        with self.conn.pipeline(transaction=False) as pipe:
            for index, (delivery, lane) in enumerate(deliveries):
                self._add(
                    keys=[
                        keys.delivery(delivery.id),
                        keys.webhook_deliveries(delivery.webhook_id or ""),
                        keys.lane_waiting(lane or ""),
                        keys.LANES_WAITING,
                    ],
                    args=[
                        DELIVERY_TTL,
                        LOG_LENGTH if delivery.webhook_id else "",
                        lane if lane and delivery.status == PENDING else "",
                        delivery.id,
                        now + index * 1e-6,  # arrival order, within one call too
                        *_flat_fields(delivery),
                    ],
                    client=pipe,
                )
            return sum(int(created) for created in pipe.execute())

    def find(self, delivery_id: str) -> Delivery | None:
        """The delivery whatever its tenant (callers check it), or None when there is none."""
        raw = {text(k): text(v) for k, v in self.conn.hgetall(keys.delivery(delivery_id)).items()}
        if not raw:
            return None
        return Delivery(
            id=raw["id"],
            tenant=raw["tenant"],
            url=raw["url"],
            event_type=raw["event_type"],
            body=raw["body"],
            webhook_id=raw.get("webhook_id") or None,
            status=raw["status"],
            attempts=int(raw.get("attempts", 0)),
            created_at=raw["created_at"],
            next_attempt_at=float(raw["next_attempt_at"]) if raw.get("next_attempt_at") else None,
            last_error=raw.get("last_error") or None,
        )

    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        """Every attempt of the delivery, oldest first."""
        return [json.loads(a) for a in self.conn.lrange(keys.delivery_attempts(delivery_id), 0, -1)]

    def record_attempt(self, delivery_id: str, attempt: dict[str, Any]) -> None:
        """Append one attempt (time, status code, latency, error) to the log."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.rpush(keys.delivery_attempts(delivery_id), json.dumps(attempt))
            pipe.expire(keys.delivery_attempts(delivery_id), DELIVERY_TTL)
            pipe.hincrby(keys.delivery(delivery_id), "attempts", 1)
            if attempt.get("error"):
                pipe.hset(keys.delivery(delivery_id), "last_error", attempt["error"])
            pipe.execute()

    def settle(self, delivery_id: str, status: str, *, reason: str | None = None) -> None:
        """Delivered, failed or skipped (saying why, if given): no more attempts."""
        fields: dict[Any, Any] = {"status": status, "next_attempt_at": ""}
        if reason:
            fields["last_error"] = reason
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hset(keys.delivery(delivery_id), mapping=fields)
            pipe.zrem(keys.DELIVERIES_DUE, delivery_id)
            pipe.execute()

    def schedule(self, delivery_id: str, at: float, *, status: str = PENDING) -> None:
        """(Re)try at `at` (epoch seconds)."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.delivery(delivery_id), mapping={"status": status, "next_attempt_at": repr(at)}
            )
            pipe.zadd(keys.DELIVERIES_DUE, {delivery_id: at})
            pipe.execute()

    def reset_attempt_budget(self, delivery_id: str) -> None:
        """A replay gets the whole retry schedule again (its attempt log is kept)."""
        self.conn.hset(keys.delivery(delivery_id), "attempts", 0)

    def take_due(self, limit: int = 100) -> list[str]:
        """Deliveries due now, each leased to the caller for LEASE_SECONDS."""
        now = time.time()
        ids = self._pop_due(keys=[keys.DELIVERIES_DUE], args=[now, now + LEASE_SECONDS, limit])
        return [text(i) for i in ids]

    def for_webhook(self, webhook_id: str, limit: int = 100) -> list[Delivery]:
        """The newest deliveries of a subscription."""
        ids = [text(i) for i in self.conn.lrange(keys.webhook_deliveries(webhook_id), 0, limit - 1)]
        return [d for d in (self.find(i) for i in ids) if d is not None]


def _flat_fields(delivery: Delivery) -> list[str]:
    """The delivery's hash as a flat field, value list (for a script)."""
    fields = {
        "id": delivery.id,
        "tenant": delivery.tenant,
        "url": delivery.url,
        "event_type": delivery.event_type,
        "body": delivery.body,
        "status": delivery.status,
        "attempts": "0",
        "created_at": delivery.created_at,
        "webhook_id": delivery.webhook_id or "",
        "last_error": delivery.last_error or "",
    }
    return [item for pair in fields.items() for item in pair]
