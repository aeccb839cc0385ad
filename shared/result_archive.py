"""ResultArchive: a finished batch's results in the blob store, so that they outlive its Redis
records (SKUAI_RESULT_TTL) for SKUAI_RESULT_ARCHIVE_TTL.

A batch's archive is three blobs under `results/<batch id>/`: `results.ndjson` and `results.csv`
(the bytes the API's exports stream, shared/exports.py) and `batch.json` (the batch object and
its tenant), written last: an archive without it is unfinished and reads as missing. The JSON
pages are read from the NDJSON, whose line i is the job at upload position i, so cursors mean the
same as they do on Redis.

Who writes: the step that completes a batch (store_scripts' maybe_complete) adds it to
`batches:unarchived`; the worker that completed it archives it at once, and the sweeper archives
any still listed (its worker died in between, or the store refused). Writing twice writes the same
bytes: redelivery is harmless."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from shared.batch_store import BatchStore
from shared.batches import Batch
from shared.blobs import BlobStore
from shared.decisions import DECISIONS, decision_of
from shared.errors import BlobStoreUnavailable, InvalidArgument, NotFound
from shared.exports import CSV, csv_lines, ndjson_lines
from shared.jobs import CANCELED, SUCCEEDED
from shared.redis_client import text

log = logging.getLogger(__name__)
RESULTS = "results/"  # every archive's blobs start with this (retention lists this prefix only)
BATCH = "batch.json"
NDJSON_BLOB = "results.ndjson"
CSV_BLOB = "results.csv"
FINAL = ("completed", CANCELED)
RETRY_AFTER = 300  # seconds before the sweeper tries a batch it could not archive again


def archive_key(batch_id: str, name: str) -> str:
    """The key of one blob of a batch's archive."""
    return f"{RESULTS}{batch_id}/{name}"


@dataclass(frozen=True)
class ArchivedJobs:
    """A batch's jobs read back from its archive, one NDJSON line each in upload order; a line
    is parsed only when a page needs it (a 10,000-job batch has 8 MB of them)."""

    lines: list[bytes]

    def job(self, position: int) -> dict[str, Any]:
        """The job at upload position `position`, in its public shape."""
        parsed: dict[str, Any] = json.loads(self.lines[position])
        return parsed

    def page(
        self, cursor: int, limit: int, decisions: tuple[str, ...] | None = None
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Jobs from upload position `cursor` on (with `decisions`: succeeded ones with one of
        them), up to `limit`, and the position after the last (None when no more): BatchStore's
        `page` semantics."""
        total = len(self.lines)
        if decisions is None:
            following = min(cursor + limit, total)
            jobs = [self.job(i) for i in range(cursor, following)]
            return jobs, following if following < total else None
        matched: list[tuple[int, dict[str, Any]]] = []
        for position in range(cursor, total):
            if _decided(job := self.job(position), decisions):
                if len(matched) == limit:  # one more matches: the next page starts after these
                    return [j for _, j in matched], matched[-1][0] + 1
                matched.append((position, job))
        return [j for _, j in matched], None

    def filtered(self, decisions: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """The succeeded jobs with one of `decisions`, one at a time."""
        for position in range(len(self.lines)):
            if _decided(job := self.job(position), decisions):
                yield job


def _decided(job: dict[str, Any], decisions: tuple[str, ...]) -> bool:
    return job["status"] == SUCCEEDED and decision_of(job["result"] or {}) in decisions


class ResultArchive:
    """Writes and reads batch archives in a blob store."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def write(self, batch: Batch, jobs: list[dict[str, Any]]) -> None:
        """Store the batch's results and then its record (the mark of a whole archive)."""
        record = {"tenant": batch.tenant, "batch": batch.to_public()}
        self.blobs.put_many(
            [
                (archive_key(batch.id, NDJSON_BLOB), "".join(ndjson_lines(jobs)).encode()),
                (archive_key(batch.id, CSV_BLOB), "".join(csv_lines(jobs)).encode()),
            ]
        )
        self.blobs.put(archive_key(batch.id, BATCH), json.dumps(record).encode())

    def batch(self, batch_id: str, tenant: str) -> Batch:
        """The archived batch of `tenant`; NotFound for none, or another tenant's."""
        try:
            raw = self._get(batch_id, BATCH)
        except InvalidArgument:  # not an id we ever made: as missing as any other
            raw = None
        record = json.loads(raw) if raw is not None else {}
        if record.get("tenant") != tenant:
            raise NotFound(f"no batch with id {batch_id!r}")
        public = record["batch"]
        return Batch(
            id=public["id"],
            tenant=tenant,
            status=public["status"],
            total=public["total"],
            counts=public["counts"],
            decisions=public["decisions"],
            created_at=public["created_at"],
            finished_at=public["finished_at"],
            model_version=public["model_version"],
            metadata=public["metadata"],
        )

    def jobs(self, batch_id: str) -> ArchivedJobs:
        """The archived jobs (check the tenant with `batch` first)."""
        raw = self._get(batch_id, NDJSON_BLOB) or b""
        return ArchivedJobs([line for line in raw.splitlines() if line])

    def export(self, batch_id: str, media_type: str) -> bytes:
        """The stored export, CSV or NDJSON (check the tenant with `batch` first)."""
        return self._get(batch_id, CSV_BLOB if media_type == CSV else NDJSON_BLOB) or b""

    def _get(self, batch_id: str, name: str) -> bytes | None:
        return self.blobs.get(archive_key(batch_id, name))


def archive_batch(batches: BatchStore, archive: ResultArchive, batch_id: str) -> bool:
    """Archive a final batch from Redis and take it off the unarchived list; True when written.
    A batch that is gone, or an upload that was rolled back (nobody was told its id), is only
    taken off; one not final yet stays listed."""
    batch = batches.find(batch_id)
    if batch is not None and batch.status not in FINAL:
        return False
    abandoned = batches.conn.hget(keys.batch(batch_id), "abandoned")
    written = batch is not None and not abandoned
    if batch is not None and written:
        jobs = [job.to_public() for job in batches.iter_jobs(batch_id)]
        archive.write(batch, jobs)
        _expire_with_its_jobs(batches.conn, batch_id, [job["id"] for job in jobs])
    batches.conn.zrem(keys.UNARCHIVED_BATCHES, batch_id)
    return written


def _expire_with_its_jobs(conn: redis.Redis, batch_id: str, job_ids: list[str]) -> None:
    """Let the batch's own Redis keys expire no later than its first job to expire. Each job's
    TTL runs from when it finished, the batch's from when it completed: until then, pages read
    from Redis would miss the jobs gone already, where the archive has them all. Expiry times
    are absolute, on Redis' clock, so the time these calls take cannot make the batch outlive
    the job."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.time()  # first: now + a TTL read after it is at most the key's expiry time
        for job_id in job_ids:
            pipe.pttl(keys.job(job_id))
        (seconds, micros), *left = pipe.execute()
    lasting = [ms for ms in left if ms > 0]
    if not lasting:
        return
    first_gone = seconds * 1000 + micros // 1000 + min(lasting)
    names = [keys.batch(batch_id), keys.batch_jobs(batch_id), keys.batch_digests(batch_id)]
    names += [keys.batch_decided(batch_id, decision) for decision in DECISIONS]
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.pttl(name)
        pipe.time()  # last: now + a TTL read before it is at least the key's expiry time
        *ttls, (seconds, micros) = pipe.execute()
    now = seconds * 1000 + micros // 1000
    with conn.pipeline(transaction=False) as pipe:
        for name, ms in zip(names, ttls, strict=True):
            if ms > 0 and now + ms > first_gone:  # only ever sooner (-2: no key, -1: no TTL)
                pipe.pexpireat(name, first_gone)
        pipe.execute()


def archive_due(batches: BatchStore, archive: ResultArchive, limit: int) -> int:
    """Archive up to `limit` of the batches listed as final and unarchived, oldest first;
    returns how many were written. One that fails is logged and tried again RETRY_AFTER
    seconds later, so it cannot hold the others back."""
    due = time.time()  # scores are when each batch ended, or when a failed one is due again
    listed: list[Any] = batches.conn.zrangebyscore(
        keys.UNARCHIVED_BATCHES, "-inf", due, start=0, num=limit
    )
    written = 0
    for batch_id in (text(i) for i in listed):
        try:
            written += archive_batch(batches, archive, batch_id)
        except Exception as exc:  # a blob store or Redis refusal, or a record it cannot read
            log.warning(
                "could not archive results (%s); retrying in %d s",
                exc,
                RETRY_AFTER,
                extra={"batch_id": batch_id},
            )
            later = {batch_id: time.time() + RETRY_AFTER}
            batches.conn.zadd(keys.UNARCHIVED_BATCHES, later, xx=True)
    return written


def archive_completed(batches: BatchStore, batch_ids: Iterable[str]) -> None:
    """Archive the batches a worker just completed, at once; best effort: a batch it cannot
    archive now (the store refused) stays listed, and the sweeper archives it."""
    if batches.jobs.blobs is None:
        return
    archive = ResultArchive(batches.jobs.blobs)
    for batch_id in batch_ids:
        try:
            archive_batch(batches, archive, batch_id)
        except (BlobStoreUnavailable, redis.RedisError) as exc:
            log.warning(
                "results not archived yet (%s); the sweeper will", exc, extra={"batch_id": batch_id}
            )


def expire_archives(blobs: BlobStore, cutoff: float, page: int, seconds: float) -> int:
    """Delete archives written before `cutoff` (epoch seconds), a page of blobs at a time for
    about `seconds`; returns the blobs deleted. Each batch's record goes first, so a batch
    never reads as archived with part of its results gone."""
    began, removed = time.monotonic(), 0
    while found := blobs.older_than(cutoff, page, RESULTS):
        batch_ids = {key.split("/")[1] for key in found}
        blobs.delete_many([archive_key(batch_id, BATCH) for batch_id in sorted(batch_ids)])
        blobs.delete_many(found)
        removed += len(found)
        if len(found) < page or time.monotonic() - began > seconds:
            break
    return removed
