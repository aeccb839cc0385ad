"""Sweeper: finds accepted work whose message went missing and sends it again.

Kombu's Redis transport takes a message off its queue and then records it as unacknowledged in a
second step; if Redis goes away between the two, the message is gone although our jobs are not.
So batches that made no progress for a while, with nothing left in the queue, get their unfinished
jobs sent again (claims make that safe: finished jobs are skipped), and single jobs waiting with
no task in the queue get one."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery

from shared import keys
from shared.queues import INFERENCE, INTERACTIVE, enqueue_classify, enqueue_singles_task
from shared.redis_client import text
from shared.singles import PENDING

log = logging.getLogger(__name__)
LOCK = f"{keys.NAMESPACE}:sweeper:lock"
PAGE = 500


class Sweeper:
    """One sweep at a time across the cluster (a Redis lock), run from worker heartbeats."""

    def __init__(
        self, conn: redis.Redis, app: Celery, *, stale_after: float, chunk_size: int
    ) -> None:
        self.conn = conn
        self.app = app
        self.stale_after = stale_after
        self.chunk_size = chunk_size

    def sweep(self) -> int:
        """Re-send what went missing; returns how many jobs were sent again."""
        if not self.conn.set(LOCK, "1", nx=True, ex=max(1, int(self.stale_after / 2))):
            return 0
        if self.conn.llen(PENDING) and not self.conn.llen(INTERACTIVE):
            enqueue_singles_task(self.app)
        if self.conn.llen(INFERENCE):
            return 0  # work is still queued: nothing is missing yet
        return sum(self._sweep_batch(text(b)) for b in self.conn.smembers(keys.OPEN_BATCHES))

    def _sweep_batch(self, batch_id: str) -> int:
        fields = self.conn.hmget(keys.batch(batch_id), "sealed", "touched", "status")
        sealed, touched, status = (text(f) if f is not None else None for f in fields)
        if status is None or status in ("completed", "canceled"):
            self.conn.srem(keys.OPEN_BATCHES, batch_id)
            return 0
        if sealed != "1" or time.time() - float(touched or 0) < self.stale_after:
            return 0
        unfinished = list(self._unfinished(batch_id))
        for i in range(0, len(unfinished), self.chunk_size):
            enqueue_classify(
                self.app, unfinished[i : i + self.chunk_size], queue=INFERENCE, batch_id=batch_id
            )
        self.conn.hset(keys.batch(batch_id), "touched", int(time.time()))
        if unfinished:
            log.warning(
                "batch stalled: sent %d unfinished jobs again",
                len(unfinished),
                extra={"batch_id": batch_id},
            )
        return len(unfinished)

    def _unfinished(self, batch_id: str) -> Any:
        total = self.conn.llen(keys.batch_jobs(batch_id))
        for start in range(0, total, PAGE):
            ids = [
                text(i)
                for i in self.conn.lrange(keys.batch_jobs(batch_id), start, start + PAGE - 1)
            ]
            with self.conn.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(keys.job(job_id), "status", "duplicate_of")
                states = pipe.execute()
            for job_id, (status, twin) in zip(ids, states, strict=True):
                if status in (b"queued", b"running") and twin is None:
                    yield job_id
