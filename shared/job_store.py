"""JobStore: jobs and their images in Redis, with idempotent, race-free status changes."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from shared import keys
from shared.errors import NotFound
from shared.jobs import FINAL_STATUSES, Job, utc_now

# Status changes run as Lua so that check-and-set is atomic: a job redelivered to a second
# worker, or canceled while running, still ends with exactly one final result.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'running')
  return 1
end
return 0
"""

_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'succeeded' or status == 'failed' or status == 'canceled' then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[3], redis.call('HGET', KEYS[1], 'status'))
return 1
"""


class JobStore:
    """Reads and writes jobs; the Redis connection is passed in."""

    def __init__(self, conn: redis.Redis, *, result_ttl: int, image_ttl: int) -> None:
        self.conn = conn
        self.result_ttl = result_ttl
        self.image_ttl = image_ttl
        self._claim = conn.register_script(_CLAIM)
        self._finish = conn.register_script(_FINISH)

    def create(self, job: Job, image: bytes) -> None:
        """Store a new job and its image in one transaction."""
        with self.conn.pipeline(transaction=True) as pipe:
            fields: dict[Any, Any] = job.to_hash()
            pipe.hset(keys.job(job.id), mapping=fields)
            pipe.expire(keys.job(job.id), self.result_ttl)
            pipe.set(keys.image(job.id), image, ex=self.image_ttl)
            pipe.execute()

    def delete(self, job_id: str) -> None:
        """Remove a job that was never handed to a worker (its enqueue failed)."""
        self.conn.delete(keys.job(job_id), keys.image(job_id))

    def find(self, job_id: str) -> Job | None:
        """The job, or None when it does not exist (or expired)."""
        raw = self.conn.hgetall(keys.job(job_id))
        return Job.from_hash(raw) if raw else None

    def get(self, job_id: str, tenant: str) -> Job:
        """The tenant's job; another tenant's job is reported as missing, never as forbidden."""
        job = self.find(job_id)
        if job is None or job.tenant != tenant:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def image(self, job_id: str) -> bytes | None:
        """The job's uploaded bytes, or None once classified or expired."""
        data: Any = self.conn.get(keys.image(job_id))
        return bytes(data) if data is not None else None

    def claim(self, job_id: str) -> bool:
        """Mark the job running; False when it already finished or no longer exists."""
        return bool(self._claim(keys=[keys.job(job_id)]))

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        model_version: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> bool:
        """Record the final status once; a second call for the same job changes nothing."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        fields: list[str] = ["status", status, "finished_at", utc_now()]
        if model_version is not None:
            fields += ["model_version", model_version]
        if result is not None:
            fields += ["result", json.dumps(result)]
        if error is not None:
            fields += ["error", json.dumps(error)]
        args = [str(self.result_ttl), *fields]
        job_keys = [keys.job(job_id), keys.image(job_id), keys.job_done_channel(job_id)]
        return bool(self._finish(keys=job_keys, args=args))

    def wait(self, job_id: str, tenant: str, timeout: float) -> Job:
        """Long-poll: return the job as soon as it is final, or as it is after `timeout` s."""
        job = self.get(job_id, tenant)
        if job.is_final or timeout <= 0:
            return job
        deadline = time.monotonic() + timeout
        pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(keys.job_done_channel(job_id))
            # Re-read after subscribing: the job may have finished in between.
            job = self.get(job_id, tenant)
            while not job.is_final and (remaining := deadline - time.monotonic()) > 0:
                # The message only wakes us early; re-reading each second covers a lost one.
                pubsub.get_message(timeout=min(remaining, 1.0))
                job = self.get(job_id, tenant)
            return job
        finally:
            pubsub.close()
