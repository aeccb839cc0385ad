"""BatchIntake: turns uploaded files, archive entries and URLs into the jobs of one batch, checks
each image on its own (a bad one fails alone), and enqueues chunks as they fill up."""

from __future__ import annotations

from shared.batch_store import FINISHED, TO_CLASSIFY, BatchStore
from shared.batches import Batch
from shared.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType
from shared.images import sniff
from shared.jobs import Job, new_job_id
from shared.queues import INFERENCE, enqueue_classify
from shared.url_guard import check_url
from web.archives import Entry
from web.services import Services

ROOM_CHECK_EVERY = 100  # images between two looks at the global queue limit


class BatchIntake:
    """Adds images to an open batch one at a time; `close()` seals it."""

    def __init__(self, svc: Services, store: BatchStore, batch: Batch) -> None:
        self.svc = svc
        self.store = store
        self.batch = batch
        self.count = 0
        self.finished: list[str] = []  # jobs already final (their job events are due)
        self._chunk: list[str] = []

    def add_bytes(self, ref: str, data: bytes) -> None:
        """An uploaded image (a multipart file or an archive entry)."""
        self._count_one()
        job = self._job(ref)
        try:
            sniff(data, max_pixels=self.svc.settings.max_image_pixels)
        except (InvalidImage, UnsupportedMediaType) as exc:
            self._handle(job, self.store.add(self.batch, job, None, error=exc.to_dict()))
            return
        self._handle(job, self.store.add(self.batch, job, data))

    def add_entry(self, entry: Entry) -> None:
        """An archive entry, which may already carry its own error."""
        if entry.data is None:
            self._count_one()
            job = self._job(entry.ref)
            self._handle(job, self.store.add(self.batch, job, None, error=entry.error))
        else:
            self.add_bytes(entry.ref, entry.data)

    def add_refused(self, ref: str, error: dict[str, str]) -> None:
        """An image refused before reading it (e.g. over the size limit)."""
        self._count_one()
        job = self._job(ref)
        self._handle(job, self.store.add(self.batch, job, None, error=error))

    def add_url(self, ref: str, url: str) -> None:
        """An image the workers fetch; the URL is checked now and again at connect time."""
        self._count_one()
        job = self._job(ref)
        job.source_url = check_url(url, allow_private=self.svc.settings.allow_private_urls)
        self._handle(job, self.store.add(self.batch, job, None))

    def close(self) -> None:
        """Enqueue the last chunk, seal, and emit the events of what finished at upload."""
        self._flush()
        completed = self.store.seal(self.batch.id)
        events = self.svc.events
        events.job_events([j for j in self.svc.jobs.find_many(self.finished) if j is not None])
        if completed:  # everything failed at upload (or was a duplicate of such)
            events.batch_completed(self.store.get(self.batch.id, self.batch.tenant))

    def _handle(self, job: Job, outcome: str) -> None:
        if outcome == TO_CLASSIFY:
            self._queue(job.id)
        elif outcome == FINISHED:
            self.finished.append(job.id)

    def _job(self, ref: str) -> Job:
        return Job(id=new_job_id(), tenant=self.batch.tenant, ref=ref[:1024] or None)

    def _count_one(self) -> None:
        self.count += 1
        if self.count % ROOM_CHECK_EVERY == 1:
            self.svc.admission.check_room(1)
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
