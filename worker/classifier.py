"""classify_jobs: claim a chunk of jobs, load and decode their images, run the cascade once for
the whole chunk, and store each result. Every image fails or succeeds on its own."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from shared.errors import SkuaiError
from shared.images import decode
from shared.job_store import Finish, JobStore
from shared.jobs import FAILED, SUCCEEDED, Job
from shared.settings import Settings
from worker.fetch import ImageFetcher

if TYPE_CHECKING:
    from training.cascade import Cascade

log = logging.getLogger(__name__)
FETCH_THREADS = 8
EXPIRED = {"code": "image_expired", "message": "the image expired before a worker took it"}


@dataclass
class ChunkOutcome:
    """What one chunk did: counts, and the batches it completed (for batch.completed events)."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    completed_batches: set[str] = field(default_factory=set)
    finished_jobs: list[str] = field(default_factory=list)  # for job.succeeded/failed events

    def to_dict(self) -> dict[str, object]:
        """Counts for the task's return value (shown in Flower)."""
        return {"succeeded": self.succeeded, "failed": self.failed, "skipped": self.skipped}


def classify_jobs(
    job_ids: list[str],
    *,
    store: JobStore,
    cascade: Cascade,
    settings: Settings,
    fetcher: ImageFetcher,
) -> ChunkOutcome:
    """Run one chunk; safe to run twice (finished jobs are skipped, results written once)."""
    outcome = ChunkOutcome()
    claimed = [job_id for job_id in job_ids if store.claim(job_id)]
    outcome.skipped = len(job_ids) - len(claimed)
    jobs = [job for job in store.find_many(claimed) if job is not None]
    ready: list[Job] = []
    pixels: list[np.ndarray] = []
    for job, data in zip(jobs, _load(jobs, store, fetcher), strict=True):
        try:
            if isinstance(data, SkuaiError):
                raise data
            pixels.append(
                decode(data, size=cascade.input_size, max_pixels=settings.max_image_pixels)
            )
            ready.append(job)
        except SkuaiError as exc:  # InvalidImage, UnsupportedMediaType, FetchFailed...
            _record(outcome, job, store.finish(job.id, FAILED, error=exc.to_dict()), ok=False)
    if ready:
        for job, result in zip(ready, cascade.predict(np.stack(pixels)), strict=True):
            finish = store.finish(job.id, SUCCEEDED, model_version=cascade.version, result=result)
            _record(outcome, job, finish, ok=True)
    log.info(
        "chunk of %d: %d succeeded, %d failed, %d skipped",
        len(job_ids),
        outcome.succeeded,
        outcome.failed,
        outcome.skipped,
    )
    return outcome


def _load(jobs: list[Job], store: JobStore, fetcher: ImageFetcher) -> list[bytes | SkuaiError]:
    """Each job's bytes (URLs fetched in parallel), or the error that replaces them."""

    def one(job: Job) -> bytes | SkuaiError:
        if job.source_url:
            try:
                return fetcher.fetch(job.source_url)
            except SkuaiError as exc:
                return exc
        data = store.image(job.id)
        return data if data is not None else SkuaiError(EXPIRED["message"], code=EXPIRED["code"])

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
    outcome.finished_jobs += [job.id, *finish.duplicates]
    if finish.batch_completed and job.batch_id:
        outcome.completed_batches.add(job.batch_id)
