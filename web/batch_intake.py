"""BatchIntake: turns uploaded files, archive entries and URLs into the jobs of one batch, checks
each image on its own (a bad one fails alone), reserves the places of the images that will wait
under SKUAI_MAX_QUEUED, and enqueues chunks as they fill up.

Images are stored a page at a time (`BatchStore.add_many`: one blob write and one Redis round
trip for up to a chunk of images), not one by one: per-image round trips were most of the API's
time in a large upload (docs/benchmarks.md)."""

from __future__ import annotations

import logging

import redis

from shared.batch_store import FINISHED, TO_CLASSIFY, BatchStore, IdempotencyKey, NewImage
from shared.batches import Batch
from shared.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType
from shared.event_store import BATCH, JOBS, Event
from shared.images import sniff
from shared.jobs import Job, new_job_id
from shared.queues import INFERENCE, enqueue_classify
from shared.url_guard import check_url
from web.archives import Entry
from web.services import Services

log = logging.getLogger(__name__)
PAGE_BYTES = 16 * 1024 * 1024  # image bytes a page holds in memory at most before it is stored


class BatchIntake:
    """Adds images to an open batch, stored a page at a time; `close()` stores the last page
    and seals it."""

    def __init__(self, svc: Services, store: BatchStore, batch: Batch) -> None:
        self.svc = svc
        self.store = store
        self.batch = batch
        self.count = 0
        self.finished: list[str] = []  # jobs already final (their job events are due)
        self._chunk: list[str] = []
        self._places = 0  # queue places reserved for the batch and not taken by a job yet
        self._page: list[NewImage] = []  # in upload order, not stored yet
        self._page_bytes = 0

    def expect(self, count: int) -> None:
        """Reserve the places of `count` images at once (the files or URLs of a request), so that
        a batch fits whole or is refused at once and concurrent batches cannot starve each other
        of the last places; 413 at once when the batch is over SKUAI_MAX_BATCH_IMAGES."""
        if count > self.svc.settings.max_batch_images:
            raise PayloadTooLarge(
                f"a batch holds at most {self.svc.settings.max_batch_images} images"
            )
        if count:
            self.svc.admission.reserve(count, self.batch.id)
            self._places += count

    def release_unused(self) -> None:
        """Give back the places no stored job took (images that failed at upload instead)."""
        self.svc.admission.release(self.batch.id)
        self._places = 0

    def abandon(self) -> None:
        """The upload was refused: give back the places no stored job took (those that did come
        back as the batch is canceled); the page not stored yet is dropped. Best effort: the
        request's own error is what counts, and unreleased places lapse by themselves
        (shared/admission.py)."""
        self._page, self._page_bytes = [], 0
        try:
            self.release_unused()
        except redis.RedisError as exc:
            log.warning(
                "could not give back queue places: %s", exc, extra={"batch_id": self.batch.id}
            )

    def add_bytes(self, ref: str, data: bytes) -> None:
        """An uploaded image (a multipart file or an archive entry)."""
        self._count_one()
        job = self._job(ref)
        try:
            sniff(data, max_pixels=self.svc.settings.max_image_pixels)
        except (InvalidImage, UnsupportedMediaType) as exc:
            self._add(NewImage(job, error=exc.to_dict()))
            return
        self._add(NewImage(job, data, reserved=True))

    def add_entry(self, entry: Entry) -> None:
        """An archive entry, which may already carry its own error."""
        if entry.data is None:
            self._count_one()
            job = self._job(entry.ref)
            self._add(NewImage(job, error=entry.error))
        else:
            self.add_bytes(entry.ref, entry.data)

    def add_refused(self, ref: str, error: dict[str, str]) -> None:
        """An image refused before reading it (e.g. over the size limit)."""
        self._count_one()
        job = self._job(ref)
        self._add(NewImage(job, error=error))

    def add_url(self, ref: str, url: str) -> None:
        """An image the workers fetch; the URL is checked now and again at connect time."""
        self._count_one()
        job = self._job(ref)
        job.source_url = check_url(url, allow_private=self.svc.settings.allow_private_urls)
        self._add(NewImage(job, reserved=True))

    def close(self, idempotency: IdempotencyKey | None = None) -> None:
        """Enqueue the last chunk, seal (binding the request's Idempotency-Key), and emit the
        events of what finished at upload."""
        self._store_page()  # first: its jobs take places the batch still holds
        self.release_unused()
        self._flush()
        # One event each, whatever the tenant subscribed to: recorded with the seal, so an
        # accepted batch never loses them; a webhook worker fans them out (if handing it over
        # fails now, the events' due schedule does it).
        finished = Event(kind=JOBS, ids=self.finished) if self.finished else None
        completed = Event(kind=BATCH, ids=[self.batch.id])
        recorded = [finished] if finished else []
        if self.store.seal(
            self.batch.id, idempotency=idempotency, finished=finished, completed=completed
        ):  # everything failed at upload (or was a duplicate of such)
            recorded.append(completed)
        for event in recorded:
            self.svc.events.fan_out(event)

    def _add(self, image: NewImage) -> None:
        """Queue an image for the page; a full page (a chunk of images, or PAGE_BYTES) is stored."""
        self._page.append(image)
        self._page_bytes += len(image.data or b"")
        full = len(self._page) >= self.svc.settings.chunk_size or self._page_bytes >= PAGE_BYTES
        if full:
            self._store_page()

    def _store_page(self) -> None:
        """Store the page. Each job that will wait for a worker takes a place the batch reserved,
        in the step that stores it: concurrent uploads never pass SKUAI_MAX_QUEUED (429 for the
        whole batch when it is full). Archive entries reserve theirs here, a page at once (how
        many there are is only known once read)."""
        if not self._page:
            return
        page, self._page, self._page_bytes = self._page, [], 0
        waiting = sum(1 for image in page if image.reserved)
        if waiting > self._places:
            self.svc.admission.reserve(waiting - self._places, self.batch.id)
            self._places = waiting
        self._places -= waiting
        for image, outcome in zip(page, self.store.add_many(self.batch, page), strict=True):
            self._handle(image.job, outcome)

    def _handle(self, job: Job, outcome: str) -> None:
        if outcome == TO_CLASSIFY:
            self._queue(job.id)
        elif outcome == FINISHED:
            self.finished.append(job.id)

    def _job(self, ref: str) -> Job:
        return Job(id=new_job_id(), tenant=self.batch.tenant, ref=ref[:1024] or None)

    def _count_one(self) -> None:
        self.count += 1
        if self.count > self.svc.settings.max_batch_images:
            raise PayloadTooLarge(
                f"a batch holds at most {self.svc.settings.max_batch_images} images"
            )

    def _queue(self, job_id: str) -> None:
        self._chunk.append(job_id)
        if len(self._chunk) >= self.svc.settings.chunk_size:
            self._flush()

    def _flush(self) -> None:
        if self._chunk:
            enqueue_classify(self.svc.celery, self._chunk, queue=INFERENCE, batch_id=self.batch.id)
            self._chunk = []
