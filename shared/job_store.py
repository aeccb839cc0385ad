"""JobStore: jobs in Redis, with idempotent, race-free status changes, and their images in the
blob store (shared/blobs/): Redis holds ids and state only, a job's image is `images/<job id>`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys, store_scripts
from shared.blobs import BlobStore
from shared.blobs.store import image_key
from shared.decisions import DECISIONS, decision_of
from shared.errors import BlobStoreUnavailable, Conflict, InvalidArgument, JobCanceled, NotFound
from shared.jobs import CANCELED, FINAL_STATUSES, SUCCEEDED, Job, utc_now
from shared.redis_client import text

log = logging.getLogger(__name__)
# finish() codes
ALREADY_FINAL = 0
FINISHED = 1
FINISHED_BATCH = 2  # ...and the job's batch completed with it


@dataclass(frozen=True)
class Finish:
    """What `JobStore.finish` did: its code, and the duplicate jobs that finished with it."""

    code: int
    duplicates: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.code != ALREADY_FINAL

    @property
    def batch_completed(self) -> bool:
        """True when the job's batch completed with this call (emit batch.completed once)."""
        return self.code == FINISHED_BATCH


@dataclass(frozen=True)
class Claim:
    """What claiming a job found (store_scripts.CLAIM): false when the job must be skipped."""

    count: int  # every claim so far, this one included; 0: finished or gone
    interrupted: bool = False  # an earlier holder vanished without finishing it
    crashes: int = 0  # ...of which held it alone: the interruptions it may have caused itself

    def __bool__(self) -> bool:
        return self.count > 0


class JobStore:
    """Reads and writes jobs; the Redis connection is passed in."""

    def __init__(
        self,
        conn: redis.Redis,
        *,
        result_ttl: int,
        image_ttl: int,
        blobs: BlobStore | None = None,
    ) -> None:
        """`blobs`: where images wait (the service always gives one); without it they wait in
        Redis, as for tests of the store's scripts alone."""
        self.conn = conn
        self.result_ttl = result_ttl
        self.image_ttl = image_ttl
        self.blobs = blobs
        self._claim = conn.register_script(store_scripts.CLAIM)
        self._hand_over = conn.register_script(store_scripts.HAND_OVER)
        self._finish = conn.register_script(store_scripts.FINISH)
        self._delete = conn.register_script(store_scripts.DELETE_JOB)

    def script_args(self, *args: str) -> list[str]:
        """The common leading arguments of every store script, then `args`."""
        return [keys.NAMESPACE, str(self.result_ttl), utc_now(), *args]

    def create(self, job: Job, image: bytes | None, pipe: Any = None) -> None:
        """Store a new job (in the caller's pipeline, or in a transaction), its image first."""
        image = self.stash_image(job.id, image)
        target = pipe if pipe is not None else self.conn.pipeline(transaction=True)
        fields: dict[Any, Any] = job.to_hash()
        target.hset(keys.job(job.id), mapping=fields)
        target.expire(keys.job(job.id), self.result_ttl)
        if image is not None:
            target.set(keys.image(job.id), image, ex=self.image_ttl)
        if not job.is_final:
            target.incr(keys.PENDING_IMAGES)  # decremented when the job settles
        if pipe is None:
            target.execute()

    def stash_image(self, job_id: str, image: bytes | None) -> bytes | None:
        """Put a new job's image in the blob store before the job is stored (no worker ever
        finds a job without its image); what is left for Redis to hold: None, or without a
        blob store the image itself."""
        if image is None or self.blobs is None:
            return image
        self.blobs.put(image_key(job_id), image)
        return None

    def delete(self, job_id: str) -> None:
        """Remove a job that was never handed to a worker (its enqueue failed); if it still
        counted as pending, the count goes down with it, in the same step (SKUAI_MAX_QUEUED)."""
        self.forget_images([job_id])  # first: if Redis is down too, the image still goes
        self._delete(args=self.script_args(job_id))

    def find(self, job_id: str) -> Job | None:
        """The job, or None when it does not exist (or expired)."""
        raw = self.conn.hgetall(keys.job(job_id))
        return Job.from_hash(raw) if raw else None

    def find_many(self, job_ids: list[str]) -> list[Job | None]:
        """Several jobs in one round trip, in order."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(keys.job(job_id))
            return [Job.from_hash(raw) if raw else None for raw in pipe.execute()]

    def get(self, job_id: str, tenant: str) -> Job:
        """The tenant's job; another tenant's job is reported as missing, never as forbidden."""
        job = self.find(job_id)
        if job is None or job.tenant != tenant:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def image(self, job_id: str) -> bytes | None:
        """The job's uploaded bytes, or None once classified or expired."""
        return self.images([job_id])[0]

    def images(self, job_ids: list[str]) -> list[bytes | None]:
        """Several jobs' bytes in one round trip, in order."""
        if not job_ids:
            return []
        if self.blobs is not None:
            return self.blobs.get_many([image_key(j) for j in job_ids])
        values: list[Any] = self.conn.mget([keys.image(j) for j in job_ids])
        return [bytes(v) if v is not None else None for v in values]

    def forget_images(self, job_ids: list[str]) -> None:
        """Delete the images of jobs that are final. Best effort: one left behind is an orphan
        the sweeper removes (worker/sweeper.py), so a failure here only logs."""
        if self.blobs is None or not job_ids:
            return
        try:
            self.blobs.delete_many([image_key(j) for j in job_ids])
        except BlobStoreUnavailable as exc:
            log.warning("could not delete %d images: %s", len(job_ids), exc)

    def claim(self, job_id: str, holder: str = "-:0") -> int:
        """Mark the job running; returns its claim count (0: finished or gone, skip it)."""
        return self.claim_many([job_id], holder)[job_id].count

    def claim_many(self, job_ids: list[str], holder: str) -> dict[str, Claim]:
        """Claim a chunk's jobs for `holder` ('<task id>:<retries>') in one round trip (each
        claim atomic); a chunk of one holds its job alone."""
        alone = "1" if len(job_ids) == 1 else "0"
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                self._claim(args=self.script_args(job_id, holder, alone), client=pipe)
            replies = pipe.execute()
        return {
            j: Claim(int(count), bool(interrupted), int(crashes))
            for j, (count, interrupted, crashes) in zip(job_ids, replies, strict=True)
        }

    def hand_over(self, job_ids: list[str]) -> None:
        """A chunk gives up its running jobs to be claimed one by one, without that next claim
        counting as an interruption."""
        if job_ids:
            self._hand_over(args=self.script_args(*job_ids))

    def finish(
        self,
        job_id: str,
        status: str,
        *,
        model_version: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
    ) -> Finish:
        """Record the final status once; a second call for the same job changes nothing."""
        reply = self._finish(args=self._finish_args(job_id, status, model_version, result, error))
        return _finish_reply(reply)

    def succeed_many(
        self, results: list[tuple[str, dict[str, Any]]], model_version: str
    ) -> list[Finish]:
        """`finish` as succeeded for a whole chunk in one round trip (each still atomic)."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id, result in results:
                args = self._finish_args(job_id, SUCCEEDED, model_version, result, None)
                self._finish(args=args, client=pipe)
            return [_finish_reply(reply) for reply in pipe.execute()]

    def _finish_args(
        self,
        job_id: str,
        status: str,
        model_version: str | None,
        result: dict[str, Any] | None,
        error: dict[str, str] | None,
    ) -> list[str]:
        if status not in FINAL_STATUSES:
            raise InvalidArgument(f"{status!r} is not a final status")
        fields: list[str] = ["status", status]
        if model_version is not None:
            fields += ["model_version", model_version]
        if result is not None:
            # A field of its own too: the store's scripts count and index it (store_scripts).
            fields += ["result", json.dumps(result), "decision", _decision(result)]
        if error is not None:
            fields += ["error", json.dumps(error)]
        return self.script_args(job_id, *fields)

    def cancel(self, job_id: str, tenant: str) -> Job:
        """Cancel a job that has not finished; a finished job is a conflict."""
        job = self.get(job_id, tenant)
        reason = JobCanceled("the job was canceled").to_dict()
        if job.is_final or not self.finish(job_id, CANCELED, error=reason):
            raise Conflict(f"job {job_id} already {self.get(job_id, tenant).status}")
        return self.get(job_id, tenant)

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


def _decision(result: dict[str, Any]) -> str:
    decision = decision_of(result)
    if decision not in DECISIONS:  # a cascade bug: a result the API could not describe
        raise InvalidArgument(f"{decision!r} is not a decision ({', '.join(DECISIONS)})")
    return decision


def _finish_reply(reply: list[Any]) -> Finish:
    code, *duplicates = reply
    return Finish(int(code), tuple(text(d) for d in duplicates))
