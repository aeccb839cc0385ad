"""Celery tasks: thin — decode the arguments, call a plain function, store the result."""

from __future__ import annotations

import logging
import time

import redis
from celery import Task, shared_task

from shared.errors import ModelNotFound
from shared.queues import CLASSIFY, CLASSIFY_SINGLES, DELIVER, INFERENCE, enqueue_classify
from worker import runtime
from worker.classifier import classify_jobs

log = logging.getLogger(__name__)


@shared_task(
    name=CLASSIFY,
    bind=True,
    acks_late=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=None,
)
def classify(self: Task, job_ids: list[str], batch_id: str | None = None) -> dict[str, object]:
    """Classify a chunk of jobs (one id for a single-image job) and store each result."""
    rt = runtime.current()
    try:
        cascade = rt.cascade(batch_id)
    except ModelNotFound as exc:
        # Jobs wait for a model to be activated rather than fail: nothing accepted is lost.
        log.warning("%s; retrying %d job(s) in 15 s", exc.message, len(job_ids))
        raise self.retry(countdown=15, max_retries=None) from None
    outcome = classify_jobs(
        job_ids,
        store=rt.store,
        cascade=cascade,
        settings=rt.settings,
        fetcher=rt.fetcher,
        metrics=rt.metrics,
    )
    for job_id in outcome.isolate:
        enqueue_classify(self.app, [job_id], queue=INFERENCE, batch_id=batch_id)
    emitter = rt.emitter(self.app)
    emitter.job_events([j for j in rt.store.find_many(outcome.finished_jobs) if j is not None])
    for completed in outcome.completed_batches:
        log.info("batch %s completed", completed)
        if (batch := rt.batches.find(completed)) is not None:
            emitter.batch_completed(batch)
    if batch_id is not None:
        log.debug("chunk of batch %s: %s", batch_id, outcome.to_dict())
    return outcome.to_dict()


@shared_task(
    name=DELIVER,
    acks_late=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=None,
)
def deliver_webhook(delivery_id: str) -> str:
    """One attempt of one webhook delivery; later attempts are scheduled, not retried here."""
    return runtime.current().delivery().attempt(delivery_id)


@shared_task(
    name=CLASSIFY_SINGLES,
    bind=True,
    acks_late=True,
    autoretry_for=(redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=None,
)
def classify_singles(self: Task) -> dict[str, object]:
    """Take every waiting single-image job (up to a chunk) into one forward pass.

    Each single job sends one of these tasks; under a burst, the first tasks take many jobs and
    the later ones find the line empty, so many small requests cost about one batch."""
    rt = runtime.current()
    try:
        cascade = rt.cascade(None)
    except ModelNotFound as exc:
        log.warning("%s; retrying in 15 s", exc.message)
        raise self.retry(countdown=15, max_retries=None) from None
    job_ids = rt.singles.take(rt.settings.chunk_size)
    if 0 < len(job_ids) < rt.settings.chunk_size and rt.settings.batch_wait_ms:
        time.sleep(rt.settings.batch_wait_ms / 1000)  # a short, bounded wait for stragglers
        job_ids += rt.singles.take(rt.settings.chunk_size - len(job_ids))
    if not job_ids:
        return {"taken": 0}
    outcome = classify_jobs(
        job_ids,
        store=rt.store,
        cascade=cascade,
        settings=rt.settings,
        fetcher=rt.fetcher,
        metrics=rt.metrics,
    )
    rt.singles.release(job_ids)
    rt.emitter(self.app).job_events(
        [j for j in rt.store.find_many(outcome.finished_jobs) if j is not None]
    )
    return {"taken": len(job_ids), **outcome.to_dict()}
