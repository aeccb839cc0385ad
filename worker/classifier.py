"""classify_jobs: claim a chunk of jobs, decode their images, run the cascade, store results."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.images import decode
from shared.job_store import JobStore
from shared.jobs import FAILED, SUCCEEDED
from shared.settings import Settings

if TYPE_CHECKING:
    from training.cascade import Cascade

log = logging.getLogger(__name__)


def classify_jobs(
    job_ids: list[str], *, store: JobStore, cascade: Cascade, settings: Settings
) -> dict[str, int]:
    """Run one chunk; safe to run twice (finished jobs are skipped, results written once)."""
    ready: list[str] = []
    pixels: list[np.ndarray] = []
    failed = 0
    for job_id in job_ids:
        if not store.claim(job_id):
            continue  # finished, canceled or expired: a redelivery must not redo it
        data = store.image(job_id)
        if data is None:
            store.finish(
                job_id,
                FAILED,
                error={
                    "code": "image_expired",
                    "message": "the image expired before a worker took it",
                },
            )
            failed += 1
            continue
        try:
            pixels.append(
                decode(data, size=cascade.input_size, max_pixels=settings.max_image_pixels)
            )
            ready.append(job_id)
        except (InvalidImage, UnsupportedMediaType) as exc:
            store.finish(job_id, FAILED, error=exc.to_dict())
            failed += 1
    succeeded = 0
    if ready:
        results = cascade.predict(np.stack(pixels))
        for job_id, result in zip(ready, results, strict=True):
            succeeded += store.finish(
                job_id, SUCCEEDED, model_version=cascade.version, result=result
            )
    log.info("chunk of %d: %d succeeded, %d failed", len(job_ids), succeeded, failed)
    return {"succeeded": succeeded, "failed": failed}
