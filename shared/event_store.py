"""EventStore: events recorded where they happen (an upload, a finished chunk) and fanned out
into deliveries later, on a webhook worker.

Recording costs the same whether the tenant has no subscription or many. An event stays in Redis
until its fan-out is done; like a delivery it is only leased to the fan-out task sent for it, so
one whose task is lost, or whose worker dies mid-way, is fanned out again (which adds nothing that
is already there). A chunk's event is recorded before its jobs finish, under an id derived from
the chunk, so a crash or Redis error between finishing and sending cannot lose it and a rerun
records nothing new; its fan-out waits for the jobs that are not final yet."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys
from shared.delivery_store import DELIVERY_TTL, LEASE_SECONDS, POP_DUE
from shared.jobs import utc_now
from shared.redis_client import text

JOBS = "jobs"  # job.succeeded / job.failed for each finished job listed
BATCH = "batch"  # batch.completed for one batch
CORRECTED = "corrected"  # job.corrected for each '<job id>:<correction seq>' listed


@dataclass(frozen=True)
class Event:
    """What happened (`kind` and the ids it concerns) and when."""

    kind: str
    ids: list[str]
    id: str = field(default_factory=lambda: "evt_" + uuid.uuid4().hex)
    timestamp: str = field(default_factory=utc_now)

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"kind": self.kind, "ids": self.ids, "timestamp": self.timestamp})

    @classmethod
    def from_json(cls, event_id: str, raw: str) -> Event:
        """Read the stored form back."""
        fields: dict[str, Any] = json.loads(raw)
        return cls(
            kind=fields["kind"], ids=fields["ids"], id=event_id, timestamp=fields["timestamp"]
        )

    @classmethod
    def for_chunk(cls, chunk: str, job_ids: list[str], also: list[str]) -> Event:
        """The `jobs` event of one chunk (a task and its jobs) and of the jobs `also` finishing
        with them: the same id each time the chunk runs."""
        digest = hashlib.sha256("\n".join([chunk, *job_ids]).encode()).hexdigest()
        more = [job_id for job_id in also if job_id not in set(job_ids)]
        return cls(kind=JOBS, ids=job_ids + more, id="evt_" + digest[:32])


class EventStore:
    """Recorded events and the schedule of their fan-out."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        self._pop_due = conn.register_script(POP_DUE)

    def record(self, event: Event, *, lease: float = LEASE_SECONDS) -> None:
        """Keep the event until it is fanned out; leased to the task the caller sends next. An
        event recorded already (a chunk's, recorded again by its rerun) keeps what it holds."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.set(keys.event(event.id), event.to_json(), ex=DELIVERY_TTL, nx=True)
            pipe.zadd(keys.EVENTS_DUE, {event.id: time.time() + lease})
            pipe.execute()

    def find(self, event_id: str) -> Event | None:
        """The event, or None once fanned out."""
        raw = self.conn.get(keys.event(event_id))
        return Event.from_json(event_id, text(raw)) if raw else None

    def postpone(self, event: Event, delay: float) -> None:
        """Keep only `event.ids` (the jobs not final yet) and fan it out again in `delay` s."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.set(keys.event(event.id), event.to_json(), ex=DELIVERY_TTL)
            pipe.zadd(keys.EVENTS_DUE, {event.id: time.time() + delay})
            pipe.execute()

    def duplicates_of(self, job_ids: list[str]) -> list[str]:
        """The jobs waiting to finish with these (duplicate images; store_scripts.FINISH)."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.lrange(f"{keys.NAMESPACE}:dups:{job_id}", 0, -1)
            return [text(dup) for dups in pipe.execute() for dup in dups]

    def done(self, event_id: str) -> None:
        """Its deliveries exist: forget the event."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.delete(keys.event(event_id))
            pipe.zrem(keys.EVENTS_DUE, event_id)
            pipe.execute()

    def take_due(self, limit: int = 100) -> list[str]:
        """Events whose fan-out is due (never sent, or its task lost), leased to the caller."""
        now = time.time()
        ids = self._pop_due(keys=[keys.EVENTS_DUE], args=[now, now + LEASE_SECONDS, limit])
        return [text(i) for i in ids]
