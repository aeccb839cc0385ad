"""classify_jobs: claim a chunk of jobs, load their images in one round trip, decode them and run
the cascade pass by pass, and store each result. Every image fails or succeeds on its own.

Decoding is pipelined with the model: while the cascade runs on one pass of images, the
process's decode pool (worker/decode_pool.py, a thread per core) decodes the next, and a writer
thread stores the previous pass's results, so the model waits for neither after the first pass.

A chunk whose worker vanished comes back (acks_late); its images are then split into chunks of
one, so that an image that kills workers can only take itself down. Only runs of an image alone
count against it: after MAX_CRASHES of them stopped their worker it fails as a poison message
instead of looping, while a healthy image caught in interrupted chunks (or in one interruption
of its own run, e.g. a deploy) still gets its result."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.decisions import decision_of
from shared.errors import (
    BlobStoreUnavailable,
    ImageExpired,
    InferenceFailed,
    PoisonMessage,
    SkuaiError,
)
from shared.job_store import Finish, JobStore
from shared.jobs import FAILED, SUCCEEDED, Job
from shared.metrics import ClusterMetrics
from shared.settings import Settings
from shared.sku_share import SkuShares
from training.cascade import MAX_PASS
from worker.decode_pool import DecodePool, PendingPass
from worker.fetch import ImageFetcher

if TYPE_CHECKING:
    from training.cascade import Cascade

log = logging.getLogger(__name__)
FETCH_THREADS = 8
MAX_CRASHES = 2  # runs of an image alone that stopped their worker before it is given up


@dataclass
class ChunkOutcome:
    """What one chunk did: counts, finished jobs and completed batches (for events), and the
    jobs to run again one by one."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    completed_batches: set[str] = field(default_factory=set)
    finished_jobs: list[str] = field(default_factory=list)  # for job.succeeded/failed events
    isolate: list[str] = field(default_factory=list)
    by_status_kind: dict[tuple[str, str], int] = field(default_factory=dict)
    by_decision: dict[tuple[str, str], int] = field(default_factory=dict)  # (decision, version)
    confidences: dict[str, list[float]] = field(default_factory=dict)  # version -> top confidence
    predicted: list[tuple[str, str]] = field(default_factory=list)  # (tenant, sku): SKU shares

    def to_dict(self) -> dict[str, object]:
        """Counts for the task's return value (shown in Flower)."""
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "isolated": len(self.isolate),
        }


def classify_jobs(
    job_ids: list[str],
    *,
    store: JobStore,
    cascade: Cascade,
    settings: Settings,
    fetcher: ImageFetcher,
    metrics: ClusterMetrics,
    holder: str,
    decoder: DecodePool,
    crash_on_ref: str | None = None,
) -> ChunkOutcome:
    """Run one chunk for the task `holder` ('<task id>:<retries>'), decoding on `decoder`'s
    threads; safe to run twice (finished jobs are skipped, results written once).
    `crash_on_ref`: a failpoint (tests only, worker/failpoints.py)."""
    outcome = ChunkOutcome()
    claims = store.claim_many(job_ids, holder)
    claimed = [job_id for job_id, claim in claims.items() if claim]
    outcome.skipped = len(job_ids) - len(claimed)
    if len(job_ids) > 1 and any(claims[job_id].interrupted for job_id in claimed):
        # One image per chunk from now on: a crash then names its image.
        store.hand_over(claimed)
        outcome.isolate = claimed
        log.warning("chunk of %d was interrupted before; splitting it", len(job_ids))
        return outcome
    jobs = [job for job in store.find_many(claimed) if job is not None]
    for job in [j for j in jobs if claims[j.id].crashes >= MAX_CRASHES]:
        log.error(
            "poison message: stopped a worker %d times alone",
            claims[job.id].crashes,
            extra={"job_id": job.id, "batch_id": job.batch_id},
        )
        poison = PoisonMessage(
            f"processing this image alone stopped a worker {MAX_CRASHES} times; giving up"
        )
        _record(outcome, job, store.finish(job.id, FAILED, error=poison.to_dict()), ok=False)
    jobs = [j for j in jobs if claims[j.id].crashes < MAX_CRASHES]
    if crash_on_ref:
        _crash_failpoint(jobs, store, crash_on_ref)
    if jobs:
        try:
            data = _load(jobs, store, fetcher)
        except BlobStoreUnavailable:
            # Nothing of theirs is final: hand the claims back, so that the task's retry (or
            # any later run) takes them up at once, without counting an interruption.
            store.hand_over(claimed)
            raise
        _run_passes(jobs, data, store, cascade, settings, outcome, metrics, decoder)
    # Finished jobs keep their images: the sweeper deletes them once their results have surely
    # reached every Redis replica (a result lost in a failover runs again, and needs its image).
    _count_finished(outcome, metrics)
    SkuShares(store.conn, settings.sku_share_window).record(outcome.predicted)
    log.info(
        "chunk of %d: %d succeeded, %d failed, %d skipped",
        len(job_ids),
        outcome.succeeded,
        outcome.failed,
        outcome.skipped,
        extra={
            "job_ids": job_ids,
            "batch_id": jobs[0].batch_id if jobs else None,
            "model_version": cascade.version,
        },
    )
    return outcome


def fail_jobs(
    job_ids: list[str], error: SkuaiError, *, store: JobStore, metrics: ClusterMetrics
) -> ChunkOutcome:
    """Fail a chunk's unfinished jobs with `error`, for a chunk that cannot run at all."""
    outcome = ChunkOutcome()
    for job in [j for j in store.find_many(job_ids) if j is not None]:
        _record(outcome, job, store.finish(job.id, FAILED, error=error.to_dict()), ok=False)
    outcome.skipped = len(job_ids) - outcome.failed
    _count_finished(outcome, metrics)
    log.error("chunk of %d failed: %s", len(job_ids), error.message, extra={"job_ids": job_ids})
    return outcome


def _crash_failpoint(jobs: list[Job], store: JobStore, spec: str) -> None:
    """Exit as a crashing decoder would, for SKUAI_FAILPOINT_CRASH_ON_REF (tests only)."""
    limits = dict(part.partition(":")[::2] for part in spec.split(","))
    for job in [j for j in jobs if j.ref in limits]:
        times = limits[str(job.ref)]
        if not times or int(store.conn.incr(f"skuai:failpoint:{job.id}")) <= int(times):
            os._exit(70)


def _count_finished(outcome: ChunkOutcome, metrics: ClusterMetrics) -> None:
    for (status, kind), count in outcome.by_status_kind.items():
        metrics.count("skuai_jobs_finished", count, status=status, kind=kind)
    for (decision, version), count in outcome.by_decision.items():
        metrics.count("skuai_decisions", count, decision=decision, model_version=version)
    for version, confidences in outcome.confidences.items():
        metrics.observe_many("skuai_top_confidence", confidences, model_version=version)


def _note_answer(
    outcome: ChunkOutcome, job: Job, result: dict[str, Any], version: str, copies: int
) -> None:
    """An answer's confidence and SKU for the drift metrics (duplicates count, as decisions)."""
    confidence = float(result["sku"]["confidence"])
    outcome.confidences.setdefault(version, []).extend([confidence] * copies)
    outcome.predicted += [(job.tenant, str(result["sku"]["label"]))] * copies


@dataclass
class _Written:
    """One job's final state as stored: the finish, whether it succeeded, and its result."""

    job: Job
    finish: Finish
    ok: bool
    result: dict[str, Any] | None = None


def _run_passes(
    jobs: list[Job],
    data: list[bytes | SkuaiError],
    store: JobStore,
    cascade: Cascade,
    settings: Settings,
    outcome: ChunkOutcome,
    metrics: ClusterMetrics,
    decoder: DecodePool,
) -> None:
    """The pool decodes pass k+1 while the cascade runs pass k; a writer thread stores pass k's
    results and metrics meanwhile. Outcomes are recorded once every write is done."""
    passes = [slice(i, i + MAX_PASS) for i in range(0, len(jobs), MAX_PASS)]

    def start(part: slice) -> PendingPass[Job]:
        return decoder.submit(
            jobs[part], data[part], size=cascade.input_size, max_pixels=settings.max_image_pixels
        )

    writes: list[Future[list[_Written]]] = []
    observed: list[Future[None]] = []
    with ThreadPoolExecutor(1, thread_name_prefix="results") as writer:
        pending = start(passes[0])
        for index in range(len(passes)):
            decoded = pending.result()
            if index + 1 < len(passes):
                pending = start(passes[index + 1])
            stages = {"decode": decoded.seconds}
            if decoded.failures:
                writes.append(writer.submit(_store_failures, store, decoded.failures))
            if decoded.ready:
                stored, timings = _predict(decoded.ready, decoded.pixels, store, cascade)
                writes.append(writer.submit(stored))
                stages |= timings
            observed.append(writer.submit(_observe, metrics, stages, len(decoded.ready)))
        for done_metrics in observed:
            done_metrics.result()
        for write in writes:  # in order; a Redis error here makes the task retry, as before
            for done in write.result():
                _record(outcome, done.job, done.finish, ok=done.ok)
                if done.ok and done.finish and done.result is not None:
                    # counted once, like the job: a redelivered copy finds it final
                    key = (decision_of(done.result), cascade.version)
                    count = outcome.by_decision.get(key, 0) + 1 + len(done.finish.duplicates)
                    outcome.by_decision[key] = count
                    copies = 1 + len(done.finish.duplicates)
                    _note_answer(outcome, done.job, done.result, cascade.version, copies)


def _store_failures(store: JobStore, failures: list[tuple[Job, dict[str, str]]]) -> list[_Written]:
    return [_Written(job, store.finish(job.id, FAILED, error=e), False) for job, e in failures]


def _observe(metrics: ClusterMetrics, stages: dict[str, float], batch_size: int) -> None:
    """A pass's metrics, off the model's thread (each is a Redis round trip)."""
    if batch_size:
        metrics.observe("skuai_inference_batch_size", batch_size)
    for stage, seconds in stages.items():
        metrics.observe("skuai_inference_stage_seconds", seconds, stage=stage)


def _predict(
    ready: list[Job], pixels: list[np.ndarray], store: JobStore, cascade: Cascade
) -> tuple[Callable[[], list[_Written]], dict[str, float]]:
    """Run the cascade on one pass; returns how to store its results, and the stage timings."""
    try:
        results, timings = cascade.predict_timed(np.stack(pixels))
    except Exception:  # a broken model must fail its jobs loudly, not leave them running
        log.exception("the cascade failed on a chunk of %d", len(ready))
        error = InferenceFailed("the model failed on this chunk; see worker logs").to_dict()
        return partial(_store_failures, store, [(job, error) for job in ready]), {}

    def stored() -> list[_Written]:
        pairs = [(job.id, result) for job, result in zip(ready, results, strict=True)]
        finishes = store.succeed_many(pairs, cascade.version)
        return [
            _Written(job, finish, True, result)
            for job, result, finish in zip(ready, results, finishes, strict=True)
        ]

    return stored, timings


def _load(jobs: list[Job], store: JobStore, fetcher: ImageFetcher) -> list[bytes | SkuaiError]:
    """Each job's bytes (URLs fetched in parallel), or the error that replaces them."""

    uploaded = dict(zip([j.id for j in jobs], store.images([j.id for j in jobs]), strict=True))

    def one(job: Job) -> bytes | SkuaiError:
        if job.source_url and uploaded[job.id] is None:  # a rerun reads it from the store
            return fetcher.fetch_into(store, job.id, job.source_url)
        if (data := uploaded[job.id]) is None:
            return ImageExpired("the image expired before a worker took it")
        return data

    if not any(job.source_url for job in jobs):
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        return list(pool.map(one, jobs))


def _record(outcome: ChunkOutcome, job: Job, finish: Finish, *, ok: bool) -> None:
    if not finish:
        return  # finished elsewhere meanwhile (canceled, or a redelivered copy won)
    if ok:
        outcome.succeeded += 1
    else:
        outcome.failed += 1
    key = (SUCCEEDED if ok else FAILED, "batch" if job.batch_id else "single")
    outcome.by_status_kind[key] = outcome.by_status_kind.get(key, 0) + 1 + len(finish.duplicates)
    outcome.finished_jobs += [job.id, *finish.duplicates]
    if finish.batch_completed and job.batch_id:
        outcome.completed_batches.add(job.batch_id)
