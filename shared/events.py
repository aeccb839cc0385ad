"""EventEmitter: records job and batch events and hands each to the webhook queue, where a
webhook worker fans it out into deliveries (worker/fan_out.py). Emitting costs one Redis write and
one message whatever the tenant subscribed to, so neither an upload nor inference waits for it."""

from __future__ import annotations

import hashlib
import logging

from celery import Celery

from shared.event_store import BATCH, CORRECTED, JOBS, Event, EventStore
from shared.queues import DELIVER, FAN_OUT, WEBHOOKS

log = logging.getLogger(__name__)


class EventEmitter:
    """Records events and sends their fan-out (and replays) to the webhook queue."""

    def __init__(self, celery: Celery, events: EventStore) -> None:
        self.celery = celery
        self.events = events

    def jobs_finished(self, job_ids: list[str]) -> None:
        """`job.succeeded` / `job.failed` for each of these finished jobs."""
        if job_ids:
            self._emit(Event(kind=JOBS, ids=job_ids))

    def chunk_started(self, chunk: str, job_ids: list[str]) -> Event:
        """Record, before any of them finishes, the `jobs` event of a chunk's jobs (and of the
        duplicates that finish with them); its fan-out is sent by `chunk_finished`, or by the
        due schedule once its lease lapses."""
        event = Event.for_chunk(chunk, job_ids, also=self.events.duplicates_of(job_ids))
        self.events.record(event)
        return event

    def chunk_finished(self, event: Event, finished: list[str]) -> None:
        """Send the chunk's fan-out, and an event of its own for jobs that finished with the
        chunk but were not known when it started (duplicates attached meanwhile)."""
        self._send(FAN_OUT, event.id)
        recorded = set(event.ids)
        self.jobs_finished([job_id for job_id in finished if job_id not in recorded])

    def batch_completed(self, batch_id: str) -> None:
        """`batch.completed`, exactly once per batch (callers emit it on the completing call)."""
        self._emit(Event(kind=BATCH, ids=[batch_id]))

    def job_corrected(self, job_id: str, seq: int) -> None:
        """`job.corrected` for the job's correction number `seq` (shared/feedback_store.py),
        under an id fixed by both: a repeat (a retried request) records nothing new, and its
        fan-out adds no delivery that exists."""
        subject = f"{job_id}:{seq}"
        digest = hashlib.sha256(f"corrected\n{subject}".encode()).hexdigest()
        self._emit(Event(kind=CORRECTED, ids=[subject], id="evt_" + digest[:32]))

    def fan_out(self, event: Event) -> None:
        """Hand an event recorded elsewhere (with a batch's seal) to the webhook queue."""
        self._send(FAN_OUT, event.id)

    def send(self, delivery_id: str) -> None:
        """Hand a delivery to the webhook queue; if that fails its lease brings it back."""
        self._send(DELIVER, delivery_id)

    def _emit(self, event: Event) -> None:
        self.events.record(event)
        self.fan_out(event)

    def _send(self, task: str, item_id: str) -> None:
        try:
            self.celery.send_task(task, args=[item_id], queue=WEBHOOKS)
        except Exception as exc:  # side channel: the due schedule hands it out again
            log.warning(
                "could not enqueue %s for %s now (%s); it will be retried", task, item_id, exc
            )
