"""Sweeper: finishes what nobody else will — uploads whose API process died, and accepted work
whose message went missing.

An upload that stores no image for SKUAI_UPLOAD_TIMEOUT will never be sealed (its API process
died, or the request was refused and the cleanup could not reach Redis): it is rolled back
(`BatchStore.abandon`), so its jobs not started are canceled, its counters and the queue limit
come back exact, and a retry with its Idempotency-Key goes through.

Kombu's Redis transport takes a message off its queue and then records it as unacknowledged in a
second step; if Redis goes away between the two, the message is gone although our jobs are not.
So sealed batches that made no progress for a while, with nothing left in the queue, get their
unfinished jobs sent again (claims make that safe: finished jobs are skipped).

Images in the blob store that no waiting job needs any more are removed: those of jobs final
for SKUAI_UPLOAD_TIMEOUT (every classified job's: workers leave them here, so that a result lost
in a Redis failover finds its image when the job runs again; a canceled upload's), paging on from
where the last pass stopped, and any older than SKUAI_IMAGE_TTL (their jobs fail as expired). An
image whose job this Redis does not know is left to the second rule: it may be another Redis
database's that shares the store (the tests' databases do), and a refused upload removes its
own images at once.

Listing and deleting images costs CPU and the process's GIL, so that blob pass never competes
with the model: it runs only once this worker process has been idle for IDLE_BEFORE_BLOBS
(worker/task_activity.py, the signals the shadow challenger waits on too) while no upload is
under way and no chunk waits, and stops between pages as soon as that changes; archive
retention, one listing of the whole store, waits for ARCHIVES_IDLE. A worker busy without a
break for longer than SKUAI_UPLOAD_TIMEOUT still deletes, in short passes of BUSY_SHARE of the
time (and retention hourly), so the store cannot grow without bound.

Batches that completed and have no result archive yet (their worker died in between, or the store
refused) are archived, and archives older than SKUAI_RESULT_ARCHIVE_TTL deleted
(shared/result_archive.py).

Each pass does bounded work, whatever the backlog: both kinds of batch sit in sorted sets by the
time of their last progress, and a pass reads only the oldest BATCHES_PER_PASS past their
deadline. Passes run on a thread of their own (worker/runtime.py), never in the heartbeat."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from celery import Celery

from shared import keys
from shared.batch_store import BatchStore
from shared.blobs import BlobStore
from shared.blobs.store import IMAGES
from shared.jobs import FINAL_STATUSES
from shared.queues import INFERENCE, INTERACTIVE, enqueue_classify, enqueue_singles_task
from shared.redis_client import text
from shared.result_archive import ResultArchive, archive_due, expire_archives
from shared.review_keeper import expire_review_images
from shared.singles import PENDING
from worker.task_activity import ACTIVITY, TaskActivity

log = logging.getLogger(__name__)
LOCK = f"{keys.NAMESPACE}:sweeper:lock"
ORPHANS_LOCK = f"{keys.NAMESPACE}:sweeper:orphans"  # listing blobs costs more: not every pass
ORPHANS_CURSOR = f"{keys.NAMESPACE}:sweeper:orphans:cursor"  # where the next orphan pass starts
ARCHIVES_LOCK = f"{keys.NAMESPACE}:sweeper:archives"  # retention lists the whole store: hourly
ARCHIVES_EVERY = 3600.0  # seconds between retention passes (archives live for days)
ORPHANS_PAGE = 200  # images listed (and job states read) per round trip; a pass stops between
# pages when a task starts, so a page is also how much deleting may overlap one
ORPHANS_SECONDS = 5.0  # a pass lists pages for about this long, then the next one goes on
IDLE_BEFORE_BLOBS = 1.0  # seconds without a task before the blob pass runs (chunks come back
# to back: a shorter gap is one task handing over to the next)
ARCHIVES_IDLE = 120.0  # seconds idle before archive retention, which lists the whole store in
# one go (on a file store, every shard folder): it must not start just before a batch comes
BUSY_SHARE = 0.02  # of a busy worker's time its sweeper spends deleting, once the pass is overdue
BUSY_PAGE = 100  # images a busy pass lists at a time (its budget is a fraction of a second)
PAGE = 500  # job ids read per round trip
BATCHES_PER_PASS = 50  # of each kind; a pass stays well under a second however many wait


@dataclass
class Swept:
    """What one pass did."""

    abandoned: int = 0  # uploads rolled back
    resent: int = 0  # jobs sent again
    migrated: int = 0  # batches moved out of the set that preceded the sorted sets
    orphans: int = 0  # images deleted from the blob store
    archived: int = 0  # completed batches whose results were archived
    expired: int = 0  # archive blobs deleted past SKUAI_RESULT_ARCHIVE_TTL


class Sweeper:
    """One pass at a time across the cluster (a Redis lock held for `every` seconds)."""

    def __init__(
        self,
        conn: redis.Redis,
        app: Celery,
        batches: BatchStore,
        *,
        stale_after: float,
        upload_timeout: float,
        chunk_size: int,
        every: float,
        image_ttl: float | None = None,
        archive_ttl: float | None = None,
        activity: TaskActivity = ACTIVITY,
    ) -> None:
        self.conn = conn
        self.app = app
        self.batches = batches
        self.stale_after = stale_after
        self.upload_timeout = upload_timeout
        self.chunk_size = chunk_size
        self.every = every
        self.image_ttl = image_ttl
        self.archive_ttl = archive_ttl
        self.activity = activity
        self._idle_pass_at = time.monotonic()  # when this process was last idle for a pass

    def sweep(self) -> Swept:
        """One pass, unless another process made one less than `every` seconds ago."""
        swept = Swept()
        if not self.conn.set(LOCK, "1", nx=True, px=max(1, int(self.every * 1000))):
            return swept
        if self.conn.llen(PENDING) and not self.conn.llen(INTERACTIVE):
            enqueue_singles_task(self.app)
        swept.migrated = self._migrate_open_set()
        swept.abandoned = self._roll_back_stale_uploads()
        if not self.conn.llen(INFERENCE):  # while work is queued, nothing is missing yet
            swept.resent = self._resend_stalled()
        blobs = self.batches.jobs.blobs
        if blobs is not None:
            swept.archived = archive_due(self.batches, ResultArchive(blobs), BATCHES_PER_PASS)
            self._blob_pass(blobs, swept)
        return swept

    def _blob_pass(self, blobs: BlobStore, swept: Swept) -> None:
        """Orphan images, review retention and archive retention: when this process is idle,
        or in a short pass when it has been busy for longer than SKUAI_UPLOAD_TIMEOUT."""
        if self._idle():
            self._idle_pass_at = time.monotonic()  # (made here, or by whoever holds the lock)
            if self.conn.set(ORPHANS_LOCK, "1", nx=True, px=max(1, int(self.upload_timeout * 500))):
                swept.orphans = self._remove_orphan_images(blobs, go_on=self._idle)
                expire_review_images(self.conn, blobs)  # tenants' review retention and caps
            long_idle = self.activity.idle_for() >= ARCHIVES_IDLE
            if long_idle and self.conn.set(
                ARCHIVES_LOCK, "1", nx=True, px=int(ARCHIVES_EVERY * 1000)
            ):
                swept.expired = self._remove_expired_archives(blobs)
        elif time.monotonic() - self._idle_pass_at > self.upload_timeout:
            # Overdue under sustained load: a slice of the time, every pass, until idle again.
            swept.orphans = self._remove_orphan_images(blobs, BUSY_PAGE, BUSY_SHARE * self.every)
            if self.conn.set(ARCHIVES_LOCK, "1", nx=True, px=int(ARCHIVES_EVERY * 1000)):
                swept.expired = self._remove_expired_archives(blobs)  # one listing an hour

    def _idle(self) -> bool:
        """True when this process has run no task for IDLE_BEFORE_BLOBS, and no upload is under
        way and no chunk waits anywhere (on a small host the API and the next chunk need the
        cores as much as the model)."""
        if self.activity.idle_for() < IDLE_BEFORE_BLOBS:
            return False
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.UNSEALED_BATCHES)
            pipe.llen(INFERENCE)
            uploading, waiting = pipe.execute()
        return not uploading and not waiting

    def _remove_expired_archives(self, blobs: BlobStore) -> int:
        """Delete result archives older than SKUAI_RESULT_ARCHIVE_TTL (none without one)."""
        if self.archive_ttl is None:
            return 0
        cutoff = time.time() - self.archive_ttl
        removed = expire_archives(blobs, cutoff, ORPHANS_PAGE, ORPHANS_SECONDS)
        if removed:
            log.info("removed %d result archive blobs past their retention", removed)
        return removed

    def _remove_orphan_images(
        self,
        blobs: BlobStore,
        page_size: int | None = None,
        seconds: float | None = None,
        go_on: Callable[[], bool] = lambda: True,
    ) -> int:
        """Page through the images older than SKUAI_UPLOAD_TIMEOUT, `page_size` at a time
        (ORPHANS_PAGE), for up to `seconds` (ORPHANS_SECONDS) and while `go_on()`, from where the
        last pass stopped (a cursor in Redis): a pass never starts over at the same first page,
        so images of jobs still queued there cannot hide the ones after them."""
        page_size = ORPHANS_PAGE if page_size is None else page_size
        seconds = ORPHANS_SECONDS if seconds is None else seconds
        now = time.time()
        cursor = text(self.conn.get(ORPHANS_CURSOR) or b"")
        began = time.monotonic()
        removed = 0
        while True:
            page = blobs.list_old(now - self.upload_timeout, page_size, IMAGES, cursor)
            if not go_on():  # a task started while listing: its deletes wait for the next pass
                break
            removed += self._remove_unneeded(blobs, page, now)
            if len(page) < page_size:
                cursor = ""  # the end: the next pass starts from the first again
                break
            cursor = page[-1][0]
            if time.monotonic() - began > seconds or not go_on():
                break
        self.conn.set(ORPHANS_CURSOR, cursor)
        if removed:
            log.info("removed %d images no waiting job needs", removed)
        return removed

    def _remove_unneeded(self, blobs: BlobStore, page: list[tuple[str, float]], now: float) -> int:
        """Delete the images of jobs final for SKUAI_UPLOAD_TIMEOUT (by then their result has
        reached every Redis replica: a failover cannot bring the job back to run again without
        its image), and any older than SKUAI_IMAGE_TTL (their jobs fail as expired)."""
        with self.conn.pipeline(transaction=False) as pipe:
            for key, _ in page:
                pipe.hmget(keys.job(key.removeprefix(IMAGES)), "status", "finished_at")
            states = pipe.execute()
        orphans = [
            key
            for (key, written), (status, finished) in zip(page, states, strict=True)
            if (self.image_ttl is not None and written < now - self.image_ttl)
            or (
                status is not None
                and text(status) in FINAL_STATUSES
                and _epoch(finished) < now - self.upload_timeout
            )
        ]
        blobs.delete_many(orphans)
        return len(orphans)

    def _roll_back_stale_uploads(self) -> int:
        rolled_back = 0
        for batch_id in self.batches.stale_uploads(
            time.time() - self.upload_timeout, BATCHES_PER_PASS
        ):
            canceled = self.batches.abandon(batch_id)
            if canceled >= 0:
                rolled_back += 1
                log.warning(
                    "upload stored nothing for %g s: rolled back, %d jobs canceled",
                    self.upload_timeout,
                    canceled,
                    extra={"batch_id": batch_id},
                )
        return rolled_back

    def _resend_stalled(self) -> int:
        cutoff = time.time() - self.stale_after
        ids: list[Any] = self.conn.zrangebyscore(
            keys.RUNNING_BATCHES, "-inf", cutoff, 0, BATCHES_PER_PASS
        )
        return sum(self._resend(text(b)) for b in ids)

    def _resend(self, batch_id: str) -> int:
        status = self.conn.hget(keys.batch(batch_id), "status")
        if status is None or text(status) in ("completed", "canceled"):
            self.conn.zrem(keys.RUNNING_BATCHES, batch_id)  # gone, or missed its own removal
            return 0
        unfinished = list(self._unfinished(batch_id))
        for i in range(0, len(unfinished), self.chunk_size):
            enqueue_classify(
                self.app, unfinished[i : i + self.chunk_size], queue=INFERENCE, batch_id=batch_id
            )
        now = int(time.time())
        self.conn.hset(keys.batch(batch_id), "touched", now)
        self.conn.zadd(keys.RUNNING_BATCHES, {batch_id: now}, xx=True)
        if unfinished:
            log.warning(
                "batch stalled: sent %d unfinished jobs again",
                len(unfinished),
                extra={"batch_id": batch_id},
            )
        return len(unfinished)

    def _unfinished(self, batch_id: str) -> Iterator[str]:
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

    def _migrate_open_set(self) -> int:
        """Batches opened before the sorted sets existed join them, a page per pass."""
        popped: Any = self.conn.spop(keys.OPEN_BATCHES, BATCHES_PER_PASS)
        ids = [text(b) for b in popped or []]
        with self.conn.pipeline(transaction=False) as pipe:
            for batch_id in ids:
                pipe.hmget(keys.batch(batch_id), "status", "sealed", "touched")
            states = pipe.execute()
        for batch_id, (status, sealed, touched) in zip(ids, states, strict=True):
            if status is None or text(status) in ("completed", "canceled"):
                continue
            into = keys.RUNNING_BATCHES if sealed == b"1" else keys.UNSEALED_BATCHES
            self.conn.zadd(into, {batch_id: int(touched or 0)})
        return len(ids)


def _epoch(finished_at: bytes | None) -> float:
    """A job's `finished_at` (ISO 8601) in epoch seconds; 0 for a final job without one."""
    if not finished_at:
        return 0.0
    return datetime.fromisoformat(text(finished_at)).timestamp()
