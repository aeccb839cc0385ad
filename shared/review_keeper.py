"""Keeping images for review as work finishes: after each chunk, the images of its jobs that
their tenants' opt-ins ask for, and those held pending a correction (worker/tasks.py); and, on
the sweeper's blob pass, every tenant's retention and cap (worker/sweeper.py). The store
itself is shared/review_store.py."""

from __future__ import annotations

import logging
import time

import redis

from shared.blobs import BlobStore
from shared.job_store import JobStore
from shared.jobs import Job
from shared.metrics import ClusterMetrics
from shared.redis_client import text
from shared.review_store import CORRECTED, KEEPING, PENDING, ReviewSettings, ReviewStore

log = logging.getLogger(__name__)


def expire_review_images(conn: redis.Redis, blobs: BlobStore) -> int:
    """For the sweeper: every tenant's retention and cap, also for tenants with no traffic;
    a tenant with nothing left kept leaves the set. Returns how many images were removed."""
    store = ReviewStore(conn, blobs)
    removed = 0
    for tenant in sorted(text(t) for t in conn.smembers(KEEPING)):
        removed += store.enforce(tenant)
        if not store.kept_count(tenant) and not store.pending_count(tenant):
            conn.srem(KEEPING, tenant)
    return removed


def keep_finished(jobs: JobStore, job_ids: list[str], window: float = 0) -> dict[str, int]:
    """After a chunk: keep the images of its finished jobs that their tenants' opt-ins ask for,
    and, for a tenant keeping corrected jobs, hold the others' as pending for `window` seconds
    (at most its retention); returns how many were kept per reason. One Redis read when no
    tenant opted in."""
    if jobs.blobs is None or not job_ids:
        return {}
    store = ReviewStore(jobs.conn, jobs.blobs)
    opted = store.opted_in()
    if not opted:
        return {}
    chosen: list[tuple[Job, list[str]]] = []
    settings: dict[str, ReviewSettings] = {}
    for job in jobs.find_many(job_ids):
        if job is None or job.tenant not in opted or job.result is None:
            continue
        if job.tenant not in settings:
            settings[job.tenant] = store.settings(job.tenant)
        wanted = settings[job.tenant]
        if reasons := wanted.reasons_for(job):
            chosen.append((job, reasons))
        elif CORRECTED in wanted.keep and window > 0:
            chosen.append((job, [PENDING]))
    kept: dict[str, int] = {}
    # Duplicates have no image of their own under images/ (URL jobs' fetched images are there).
    for (job, reasons), image in zip(chosen, jobs.images([j.id for j, _ in chosen]), strict=True):
        if image is None:
            continue
        if reasons == [PENDING]:
            held = min(window, settings[job.tenant].retention_seconds)
            store.keep(job, image, [], hold_until=time.time() + held)
        else:
            store.keep(job, image, reasons)
        for reason in reasons:
            kept[reason] = kept.get(reason, 0) + 1
    return kept


def keep_for_review(
    jobs: JobStore, job_ids: list[str], metrics: ClusterMetrics, window: float = 0
) -> None:
    """`keep_finished`, counted in skuai_review_kept; a side channel: a failure only logs, it
    never fails or retries the chunk whose results are stored already."""
    try:
        kept = keep_finished(jobs, job_ids, window)
    except Exception as exc:  # the blob store or Redis refused: these images are not kept
        log.warning("could not keep images for review: %s", exc, extra={"job_ids": job_ids})
        return
    for reason, count in kept.items():
        metrics.count("skuai_review_kept", count, reason=reason)
