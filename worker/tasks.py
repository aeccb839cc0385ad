"""Celery tasks: thin — decode the arguments, call a plain function, store the result."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

import redis
from celery import Task, shared_task

from shared.errors import BlobStoreUnavailable, SkuaiError
from shared.queues import (
    CLASSIFY,
    CLASSIFY_SINGLES,
    DELIVER,
    FAN_OUT,
    INFERENCE,
    INTERACTIVE,
    enqueue_classify,
)
from shared.result_archive import archive_completed
from shared.review_keeper import keep_for_review
from worker import runtime, shadow
from worker.classifier import ChunkOutcome, classify_jobs, fail_jobs
from worker.retry_policy import RetryPolicy

if TYPE_CHECKING:
    from training.cascade import Cascade
    from worker.celery_app import WorkerApp

log = logging.getLogger(__name__)


# Redis blips are retried with backoff, without bound: redis-py's errors are the condition
# ServiceUnavailable (retryable) names, and the jobs to fail live in Redis anyway. SkuaiErrors
# follow worker/retry_policy.py. A worker that vanishes mid-task leaves its message
# unacknowledged (acks_late), so another worker runs it again.
RETRYING: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": None,
}


@shared_task(name=CLASSIFY, bind=True, **RETRYING)
def classify(self: Task, job_ids: list[str], batch_id: str | None = None) -> dict[str, object]:
    """Classify a chunk of jobs and store each result."""
    rt = runtime.current(self.app)
    cascade = _cascade_or_error(self, rt, batch_id)
    queue = INFERENCE if batch_id is not None else INTERACTIVE
    return _run_chunk(self, rt, cascade, job_ids, batch_id, queue).to_dict()


@shared_task(name=CLASSIFY_SINGLES, bind=True, **RETRYING)
def classify_singles(self: Task, job_ids: list[str] | None = None) -> dict[str, object]:
    """Take every waiting single-image job (up to a chunk) into one forward pass.

    Each single job sends one of these tasks; under a burst, the first tasks take many jobs and
    the later ones find the line empty, so many small requests cost about one batch. `job_ids`:
    the jobs this task had already taken (and still leases), on its retry after a blob store
    error."""
    rt = runtime.current(self.app)
    cascade = _cascade_or_error(self, rt, None)
    if job_ids is None:
        job_ids = rt.singles.take(rt.settings.chunk_size)
        if 0 < len(job_ids) < rt.settings.chunk_size and rt.settings.batch_wait_ms:
            time.sleep(rt.settings.batch_wait_ms / 1000)  # a short, bounded wait for stragglers
            job_ids += rt.singles.take(rt.settings.chunk_size - len(job_ids))
    if not job_ids:
        return {"taken": 0}
    outcome = _run_chunk(self, rt, cascade, job_ids, None, INTERACTIVE)
    rt.singles.release(job_ids)
    return {"taken": len(job_ids), **outcome.to_dict()}


@shared_task(name=DELIVER, bind=True, **RETRYING)
def deliver_webhook(self: Task, delivery_id: str) -> str:
    """One attempt of one webhook delivery; later attempts are scheduled, not retried here."""
    return runtime.current(self.app).delivery(self.app).attempt(delivery_id)


@shared_task(name=FAN_OUT, bind=True, **RETRYING)
def fan_out_event(self: Task, event_id: str) -> int:
    """Turn one recorded event into its webhook deliveries."""
    return runtime.current(self.app).fan_out(self.app).run(event_id)


def _cascade_or_error(
    task: Task, rt: runtime.Runtime, batch_id: str | None
) -> Cascade | SkuaiError:
    """The chunk's cascade; or the task retries (a retryable error, e.g. no model activated
    yet: the jobs wait); or the error the chunk's jobs fail with (a permanent one, or one that
    outlasted the uploaded images it was waiting for)."""
    try:
        return rt.cascade(batch_id)
    except SkuaiError as exc:
        policy = RetryPolicy(give_up_after=rt.settings.image_ttl)
        delay = policy.delay(exc, task.request.retries)
        if delay is None:
            return exc
        log.warning("%s; retrying in %g s", exc.message, delay)
        raise task.retry(countdown=delay, max_retries=None) from None


def _run_chunk(
    task: Task,
    rt: runtime.Runtime,
    cascade: Cascade | SkuaiError,
    job_ids: list[str],
    batch_id: str | None,
    queue: str,
) -> ChunkOutcome:
    """classify_jobs (or fail_jobs, without a cascade), then its follow-ups: isolated re-runs,
    job and batch events."""
    emitter = rt.emitter(task.app)
    # Recorded before any job is final: a rerun after a crash or a Redis error finds its jobs
    # final and claims none, so the events must not depend on this run's outcome.
    event = emitter.chunk_started(task.request.id or "", job_ids)
    if isinstance(cascade, SkuaiError):
        outcome = fail_jobs(job_ids, cascade, store=rt.store, metrics=rt.metrics)
    else:
        try:
            outcome = classify_jobs(
                job_ids,
                store=rt.store,
                cascade=cascade,
                settings=rt.settings,
                fetcher=rt.fetcher,
                metrics=rt.metrics,
                # A redelivery after a crash is the same message again (same id and retries); a
                # retry after a Redis error is the same task with one more retry.
                holder=f"{task.request.id}:{task.request.retries or 0}",
                decoder=rt.decoder,
                crash_on_ref=_app(task).failpoints.crash_on_ref,
            )
        except BlobStoreUnavailable as exc:
            outcome = _retry_or_fail(task, rt, exc, job_ids)
    _blip_failpoint(task, rt, outcome)
    for job_id in outcome.isolate:  # interrupted before: one image per task from now on
        enqueue_classify(task.app, [job_id], queue=queue, batch_id=batch_id)
    # The fan-out sends job.* for the final jobs, batch.completed for their completed batches.
    emitter.chunk_finished(event, outcome.finished_jobs)
    # Before the sweeper deletes them: images the tenants' review opt-ins ask to keep.
    keep_for_review(
        rt.store, outcome.finished_jobs, rt.metrics, rt.settings.review_correction_window
    )
    # Last, once every champion result is stored: the challenger runs when this process is idle.
    shadow.offer(rt, outcome.finished_jobs)
    for completed in outcome.completed_batches:
        log.info("batch completed", extra={"batch_id": completed})
    archive_completed(rt.batches, outcome.completed_batches)  # else the sweeper does
    return outcome


def _retry_or_fail(
    task: Task, rt: runtime.Runtime, exc: BlobStoreUnavailable, job_ids: list[str]
) -> ChunkOutcome:
    """The images could not be read (a store timeout, a 503): nothing is final and the claims
    are handed back, so the task retries soon (worker/retry_policy.py) rather than leave its
    jobs running until the sweeper; a store down for longer than the images live fails them."""
    delay = RetryPolicy(give_up_after=rt.settings.image_ttl).delay(exc, task.request.retries)
    if delay is None:
        return fail_jobs(job_ids, exc, store=rt.store, metrics=rt.metrics)
    log.warning("%s; retrying the chunk in %g s", exc.message, delay, extra={"job_ids": job_ids})
    # classify_singles runs the jobs it took again, not the next ones in line.
    kwargs = {"job_ids": job_ids} if task.name == CLASSIFY_SINGLES else None
    raise task.retry(countdown=delay, max_retries=None, kwargs=kwargs) from None


def _app(task: Task) -> WorkerApp:
    return cast("WorkerApp", task.app)


def _blip_failpoint(task: Task, rt: runtime.Runtime, outcome: ChunkOutcome) -> None:
    """A Redis error between finishing jobs and sending their events, for
    SKUAI_FAILPOINT_BLIP_AFTER_FINISH (tests only): the task retries, as after a real blip."""
    times = _app(task).failpoints.blip_after_finish
    count = rt.store.conn.incr if times and outcome.finished_jobs else None
    if count is not None and int(count("skuai:failpoint:blip_after_finish")) <= times:
        raise redis.ConnectionError("failpoint: Redis went away after finishing jobs")
