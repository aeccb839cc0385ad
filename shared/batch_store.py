"""BatchStore: batches, their jobs in upload order, duplicates, cancel and idempotency keys."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys, store_scripts
from shared.admission import RESERVATION_TTL
from shared.batches import Batch
from shared.blobs.store import image_key
from shared.decisions import DECISIONS, decision_of
from shared.delivery_store import DELIVERY_TTL, LEASE_SECONDS
from shared.errors import (
    Conflict,
    IdempotencyKeyReused,
    JobCanceled,
    NotFound,
    ServiceUnavailable,
)
from shared.event_store import Event
from shared.job_store import FINISHED_BATCH, JobStore
from shared.jobs import FAILED, SUCCEEDED, Job, utc_now
from shared.redis_client import text

IDEMPOTENCY_PENDING_TTL = 600  # a crashed upload frees its key after this long at the latest
ABANDONED_TTL = 3600  # seconds a rolled-back upload's records stay (nobody was told its id)
PAGE = 500
# add() outcomes
TO_CLASSIFY = "to_classify"
DUPLICATE = "duplicate"  # same bytes as an earlier image of the batch: shares its result
FINISHED = "finished"  # failed at upload, or a duplicate whose twin was already done
REFUSED = "refused"  # add_many: the sweeper rolled the upload back first (nothing stored)
INSERTED_DUPLICATE, INSERTED_FINISHED = 2, 3  # store_scripts.INSERT: a duplicate waits / is done
SEAL_ABANDONED = 0  # store_scripts.SEAL: the sweeper rolled the upload back first
# abandon() outcomes besides the number of jobs canceled
GONE = -1  # no such batch, or rolled back already
SEALED = -2  # sealed after all: accepted, its request answers 202
ROLLED_BACK = (
    "the upload stalled for longer than SKUAI_UPLOAD_TIMEOUT and was rolled back; send it again"
)


@dataclass(frozen=True)
class IdempotencyKey:
    """The Idempotency-Key a batch's request sent, bound to the batch when it is sealed."""

    tenant: str
    key: str
    fingerprint: str  # of the request (web/idempotency.py)


@dataclass
class NewImage:
    """One image of an upload for `BatchStore.add_many`: its job, its bytes (None for a URL the
    workers fetch, or an image that failed at upload), the error it failed with, and whether it
    takes one of the queue places its batch reserved (Admission.reserve)."""

    job: Job
    data: bytes | None = None
    error: dict[str, str] | None = None
    reserved: bool = False


class BatchStore:
    """Reads and writes batches; jobs go through the JobStore."""

    def __init__(self, conn: redis.Redis, jobs: JobStore) -> None:
        self.conn = conn
        self.jobs = jobs
        self._seal = conn.register_script(store_scripts.SEAL)
        self._cancel = conn.register_script(store_scripts.CANCEL)
        self._abandon = conn.register_script(store_scripts.ABANDON)
        self._insert_job = conn.register_script(store_scripts.INSERT)

    def open(self, batch: Batch) -> None:
        """Create an empty, unsealed batch (it cannot complete until `seal`, and is rolled back
        when its upload stores no image for SKUAI_UPLOAD_TIMEOUT: see `abandon`)."""
        now = int(time.time())
        fields: dict[Any, Any] = {**batch.to_hash(), "touched": now}
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hset(keys.batch(batch.id), mapping=fields)
            pipe.expire(keys.batch(batch.id), self.jobs.result_ttl)
            pipe.zadd(keys.UNSEALED_BATCHES, {batch.id: now})
            pipe.execute()

    def add(
        self,
        batch: Batch,
        job: Job,
        data: bytes | None,
        error: dict[str, str] | None = None,
        *,
        reserved: bool = False,
    ) -> str:
        """Add one image (see `add_many`)."""
        return self.add_many(batch, [NewImage(job, data, error, reserved)])[0]

    def add_many(self, batch: Batch, images: list[NewImage]) -> list[str]:
        """Add a page of an upload's images, in order: each TO_CLASSIFY, DUPLICATE (waits for
        its twin) or FINISHED (at once). One blob write and one Redis round trip for the page,
        each job still stored atomically (store_scripts.INSERT); 503 when the sweeper rolled
        the upload back meanwhile. A refusal leaves no image of the page's unstored jobs behind
        (those stored are canceled with the batch when the request rolls it back)."""
        for image in images:
            image.job.batch_id = batch.id
            if image.error is not None:
                image.job.status, image.job.error = FAILED, image.error
                image.job.finished_at = utc_now()
        kept = self._stash([image for image in images if image.error is None])
        try:
            with self.conn.pipeline(transaction=False) as pipe:
                for image in images:
                    args = self._insert_args(batch, image, kept.get(image.job.id))
                    self._insert_job(args=args, client=pipe)
                replies: list[Any] = pipe.execute(raise_on_error=False)
        except redis.RedisError:  # e.g. unreachable: no image may outlive the refusal
            self.jobs.forget_images([image.job.id for image in images])
            raise
        outcomes = [_outcome(image, reply) for image, reply in zip(images, replies, strict=True)]
        # A duplicate's bytes are its twin's; an unstored job's are nobody's.
        self.jobs.forget_images(
            [
                image.job.id
                for image, outcome in zip(images, outcomes, strict=True)
                if image.data is not None and outcome not in (TO_CLASSIFY, FINISHED)
            ]
        )
        if failed := [reply for reply in replies if isinstance(reply, redis.ResponseError)]:
            # An error reply (OOM, READONLY...: web/errors.py answers 503 for those), raised only
            # now that the unstored jobs' images are forgotten.
            error: redis.ResponseError = failed[0]
            raise error
        if REFUSED in outcomes:
            raise ServiceUnavailable(ROLLED_BACK)
        return outcomes

    def _stash(self, images: list[NewImage]) -> dict[str, bytes]:
        """Put the page's images in the blob store in one call, before their jobs are stored (no
        worker ever finds a job without its image); returns what Redis is to hold instead, by
        job id (without a blob store: the images themselves)."""
        with_bytes = [(image.job.id, image.data) for image in images if image.data is not None]
        if self.jobs.blobs is None:
            return dict(with_bytes)
        self.jobs.blobs.put_many((image_key(job_id), data) for job_id, data in with_bytes)
        return {}

    def _insert_args(self, batch: Batch, image: NewImage, data: bytes | None) -> list[str | bytes]:
        """store_scripts.INSERT's arguments for one image."""
        job = image.job
        digest = "" if image.data is None else hashlib.sha256(image.data).hexdigest()
        args = self.jobs.script_args(
            batch.id,
            job.id,
            job.status,
            "1" if image.reserved else "0",
            "0" if job.is_final else "1",
            str(self.jobs.image_ttl),
            "0" if data is None else "1",
        )
        lapses = str(time.time() + RESERVATION_TTL)
        fields = [item for pair in job.to_hash().items() for item in pair]
        return [*args, data or b"", lapses, str(int(time.time())), digest, *fields]

    def seal(
        self,
        batch_id: str,
        *,
        idempotency: IdempotencyKey | None = None,
        finished: Event | None = None,
        completed: Event | None = None,
    ) -> bool:
        """No more images will come; True when the batch completed right away. In the same step
        its Idempotency-Key is bound to it and the events given are recorded (`finished`: of
        the jobs that finished at upload; `completed`: batch.completed, only if it completes
        now), so nothing of an accepted batch depends on a later write. 503 when the upload
        stalled so long that the sweeper rolled it back meanwhile."""
        record, binding = "", ""
        if idempotency is not None:
            record = self._idempotency(idempotency.tenant, idempotency.key)
            binding = f"{batch_id} {idempotency.fingerprint}"
        args = self.jobs.script_args(batch_id, record, binding)
        args += [str(DELIVERY_TTL), str(time.time() + LEASE_SECONDS)]
        args += [finished.id, finished.to_json()] if finished else ["", ""]
        args += [completed.id, completed.to_json()] if completed else ["", ""]
        outcome = int(self._seal(args=args))
        if outcome == SEAL_ABANDONED:
            raise ServiceUnavailable(ROLLED_BACK)
        return outcome == FINISHED_BATCH

    def abandon(self, batch_id: str) -> int:
        """Roll back an upload that will never be sealed (refused, or its API process died):
        jobs not started are canceled, the batch ends `canceled`, its Idempotency-Key is freed.
        The canceled jobs' images are deleted (best effort: the sweeper removes any left).
        Returns the jobs canceled, GONE (rolled back already, or no such batch), or SEALED (it
        was sealed after all: accepted, its key stays bound)."""
        reason = JobCanceled("the upload of this batch did not finish; none of it was accepted")
        args = [keys.NAMESPACE, str(ABANDONED_TTL), utc_now(), batch_id]
        code, *canceled = self._abandon(args=[*args, json.dumps(reason.to_dict())])
        self.jobs.forget_images([text(job_id) for job_id in canceled])
        return int(code)

    def stale_uploads(self, older_than: float, limit: int) -> list[str]:
        """Up to `limit` unsealed batches whose upload stored nothing since `older_than`
        (epoch seconds), oldest first."""
        ids: list[Any] = self.conn.zrangebyscore(
            keys.UNSEALED_BATCHES, "-inf", older_than, 0, limit
        )
        return [text(i) for i in ids]

    def find(self, batch_id: str) -> Batch | None:
        """The batch whatever its tenant (`get` checks it), or None when there is none."""
        raw = self.conn.hgetall(keys.batch(batch_id))
        return Batch.from_hash(raw) if raw else None

    def get(self, batch_id: str, tenant: str) -> Batch:
        """The tenant's batch; another tenant's is reported as missing."""
        batch = self.find(batch_id)
        if batch is None or batch.tenant != tenant:
            raise NotFound(f"no batch with id {batch_id!r}")
        return batch

    def page(
        self,
        batch_id: str,
        cursor: int,
        limit: int,
        decisions: tuple[str, ...] | None = None,
    ) -> tuple[list[Job], int | None]:
        """Jobs [cursor, cursor + limit) in upload order, and the next cursor (None at the end).
        With `decisions`, only succeeded jobs with one of them, from upload position `cursor`
        on (see `decided_page`)."""
        if decisions is not None:
            return self.decided_page(batch_id, cursor, limit, decisions)
        ids = [
            text(i) for i in self.conn.lrange(keys.batch_jobs(batch_id), cursor, cursor + limit - 1)
        ]
        jobs = [job for job in self.jobs.find_many(ids) if job is not None]
        following = cursor + len(ids)
        more = len(ids) == limit and self.conn.llen(keys.batch_jobs(batch_id)) > following
        return jobs, following if more else None

    def decided_page(
        self, batch_id: str, cursor: int, limit: int, decisions: tuple[str, ...]
    ) -> tuple[list[Job], int | None]:
        """Up to `limit` succeeded jobs with one of `decisions`, at upload positions from
        `cursor` on, and the position after the last (None when no more match). Read from the
        per-decision indexes the store's scripts keep (O(log n + limit) for a batch of any
        size); a batch with results stored before those indexes existed is scanned instead."""
        if not self._indexed(batch_id):
            return self._scanned_page(batch_id, cursor, limit, decisions)
        with self.conn.pipeline(transaction=False) as pipe:
            for decision in decisions:
                key = keys.batch_decided(batch_id, decision)
                pipe.zrangebyscore(key, cursor, "+inf", start=0, num=limit + 1, withscores=True)
            found = sorted((score, text(i)) for reply in pipe.execute() for i, score in reply)
        jobs = [job for job in self.jobs.find_many([i for _, i in found[:limit]]) if job]
        return jobs, int(found[limit - 1][0]) + 1 if len(found) > limit else None

    def _indexed(self, batch_id: str) -> bool:
        """True when every succeeded job of the batch is in a decision index (read in one
        transaction: a job's status and its index move in one script)."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hget(keys.batch(batch_id), SUCCEEDED)
            for decision in DECISIONS:
                pipe.zcard(keys.batch_decided(batch_id, decision))
            succeeded, *indexed = pipe.execute()
        return int(succeeded or 0) == sum(indexed)

    def _scanned_page(
        self, batch_id: str, cursor: int, limit: int, decisions: tuple[str, ...]
    ) -> tuple[list[Job], int | None]:
        """`decided_page` by reading the jobs in upload order, for a batch whose results
        predate the decision indexes."""
        source, position = keys.batch_jobs(batch_id), cursor
        matched: list[Job] = []
        while ids := [text(i) for i in self.conn.lrange(source, position, position + PAGE - 1)]:
            for job in self.jobs.find_many(ids):
                position += 1
                if job and job.status == SUCCEEDED and decision_of(job.result or {}) in decisions:
                    matched.append(job)
                    if len(matched) == limit:
                        more = self.conn.llen(source) > position
                        return matched, position if more else None
        return matched, None

    def iter_jobs(self, batch_id: str, decisions: tuple[str, ...] | None = None) -> Iterator[Job]:
        """Every job of the batch (with `decisions`: its succeeded jobs with one of them), a page
        at a time (bounded memory for exports)."""
        cursor: int | None = 0
        while cursor is not None:
            jobs, cursor = self.page(batch_id, cursor, PAGE, decisions)
            yield from jobs

    def cancel(self, batch_id: str, tenant: str) -> tuple[Batch, bool]:
        """Cancel what has not run; returns the batch and whether it completed with this call."""
        self.get(batch_id, tenant)
        reason = json.dumps(JobCanceled("the batch was canceled").to_dict())
        outcome = int(self._cancel(args=self.jobs.script_args(batch_id, reason)))
        return self.get(batch_id, tenant), outcome < 0

    def claim_idempotency_key(
        self, tenant: str, key: str, batch_id: str, fingerprint: str
    ) -> str | None:
        """Reserve `key` for `batch_id`; returns the batch id already bound to it, if any. The
        key sent with another request (`fingerprint`) is refused rather than replayed."""
        name = self._idempotency(tenant, key)
        if self.conn.set(
            name, f"pending:{batch_id} {fingerprint}", nx=True, ex=IDEMPOTENCY_PENDING_TTL
        ):
            # so that rolling the upload back frees the key (`abandon`)
            self.conn.set(keys.batch_idempotency(batch_id), name, ex=IDEMPOTENCY_PENDING_TTL)
            return None
        existing, _, first = text(self.conn.get(name) or b"").partition(" ")
        if first and first != fingerprint:  # keys bound before fingerprints have none
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request; "
                "send a new key for new content"
            )
        if existing.startswith("pending:"):
            raise Conflict("a request with this Idempotency-Key is still being processed")
        return existing or None

    def _idempotency(self, tenant: str, key: str) -> str:
        return keys.idempotency(tenant, hashlib.sha256(key.encode()).hexdigest())


def _outcome(image: NewImage, reply: Any) -> str:
    """What store_scripts.INSERT's reply means for the image (an error reply: REFUSED)."""
    if isinstance(reply, Exception) or not int(reply[0]):
        return REFUSED
    code = int(reply[0])
    if code >= INSERTED_DUPLICATE:
        image.job.duplicate_of = text(reply[1])
        return FINISHED if code == INSERTED_FINISHED else DUPLICATE
    return FINISHED if image.job.is_final else TO_CLASSIFY
