"""FanOut: on a webhook worker, turns one recorded event into its deliveries — one per
subscription that wants it and one per callback URL — and starts the lanes they wait in.

Only subscriptions that existed when the event happened get it. Delivery ids derive from what
happened (the event type and its job or batch) and the target, so a fan-out that runs twice (its
worker died, its lease lapsed), or two events naming one job (a chunk's and its rerun's), add
nothing that is there. A `jobs` event is recorded before its jobs finish: jobs not final yet wait
for a later fan-out of the event, and a batch that completed with its jobs gets batch.completed
from it. A subscription that is disabled
gets its deliveries logged as skipped: once re-enabled, they can be replayed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from shared.batch_store import BatchStore
from shared.batches import COMPLETED
from shared.delivery_store import LEASE_SECONDS, SKIPPED, Delivery, DeliveryStore, delivery_id_for
from shared.endpoint_lanes import EndpointLanes, lane_of
from shared.event_store import CORRECTED, JOBS, Event, EventStore
from shared.feedback_store import FeedbackStore
from shared.job_store import JobStore
from shared.jobs import CANCELED, FAILED, SUCCEEDED
from shared.webhook_store import ACTIVE, Subscription, WebhookStore

log = logging.getLogger(__name__)
JOB_EVENTS = {SUCCEEDED: "job.succeeded", FAILED: "job.failed"}
CHUNK = 500  # jobs read, and deliveries written, per round trip
CALLBACK = "callback"
BATCH_FINAL = (COMPLETED, CANCELED)  # what store_scripts' maybe_complete leaves a batch in


@dataclass(frozen=True)
class Occurrence:
    """One job's or batch's event, with what its deliveries carry."""

    tenant: str
    event_type: str
    subject: str
    data: dict[str, Any]
    callback_url: str | None


class FanOut:
    """Creates an event's deliveries and hands the first of each lane to `send`."""

    def __init__(
        self,
        events: EventStore,
        jobs: JobStore,
        batches: BatchStore,
        webhooks: WebhookStore,
        deliveries: DeliveryStore,
        lanes: EndpointLanes,
        send: Callable[[str], None],
    ) -> None:
        self.events = events
        self.jobs = jobs
        self.batches = batches
        self.webhooks = webhooks
        self.deliveries = deliveries
        self.lanes = lanes
        self.send = send

    def run(self, event_id: str) -> int:
        """Fan the event out (if not done yet); returns how many deliveries are new."""
        event = self.events.find(event_id)
        if event is None:
            return 0
        subscriptions: dict[tuple[str, str], list[Subscription]] = {}
        waiting: list[str] = []  # jobs not final yet
        batch_ids: set[str] = set()  # batches of the final jobs
        created = 0
        for start in range(0, len(event.ids), CHUNK):
            ids = event.ids[start : start + CHUNK]
            if event.kind == JOBS:
                found = self._job_occurrences(ids, waiting, batch_ids)
            elif event.kind == CORRECTED:
                found = self._correction_occurrences(ids)
            else:
                found = self._batch_occurrences(ids, final_only=False)
            created += self._add(event, list(found), subscriptions)
        done = self._batch_occurrences(sorted(batch_ids), final_only=True)
        created += self._add(event, list(done), subscriptions)
        if waiting:
            self.events.postpone(replace(event, ids=waiting), LEASE_SECONDS)
        else:
            self.events.done(event_id)
        return created

    def _add(
        self,
        event: Event,
        occurrences: list[Occurrence],
        subscriptions: dict[tuple[str, str], list[Subscription]],
    ) -> int:
        """Store the occurrences' deliveries and start their lanes; returns how many are new."""
        pairs: list[tuple[Delivery, str | None]] = []
        for occurrence in occurrences:
            key = (occurrence.tenant, occurrence.event_type)
            if key not in subscriptions:
                subscriptions[key] = self.webhooks.subscribers(*key)
            pairs += _deliveries(event, occurrence, subscriptions[key])
        if not pairs:
            return 0
        created = self.deliveries.add_many(pairs)
        for lane in {lane for _, lane in pairs if lane}:
            for delivery_id in self.lanes.admit(lane):
                self.send(delivery_id)
        return created

    def _job_occurrences(
        self, ids: list[str], waiting: list[str], batch_ids: set[str]
    ) -> Iterator[Occurrence]:
        for job_id, job in zip(ids, self.jobs.find_many(ids), strict=True):
            if job is None:
                log.warning("job %s expired before its event was sent", job_id)
            elif not job.is_final:
                waiting.append(job_id)  # its chunk's event was recorded before it finished
            else:
                if job.batch_id:
                    batch_ids.add(job.batch_id)
                if (event_type := JOB_EVENTS.get(job.status)) is not None:
                    yield Occurrence(
                        job.tenant, event_type, job.id, job.to_public(), job.callback_url
                    )

    def _correction_occurrences(self, ids: list[str]) -> Iterator[Occurrence]:
        """job.corrected: the job with the correction the event names (each its own delivery,
        so a later correction of the same job is sent too); never to the job's callback_url."""
        feedback = FeedbackStore(self.jobs.conn)
        for subject in ids:
            job_id, _, seq = subject.rpartition(":")
            job = self.jobs.find(job_id)
            history = feedback.history(job.tenant, job_id) if job is not None else []
            if job is None or not 0 < int(seq) <= len(history):
                log.warning(
                    "job %s or its correction %s expired before its event was sent", job_id, seq
                )
                continue
            data = {**job.to_public(), "correction": history[int(seq) - 1].to_public()}
            yield Occurrence(job.tenant, "job.corrected", subject, data, None)

    def _batch_occurrences(self, ids: list[str], *, final_only: bool) -> Iterator[Occurrence]:
        for batch_id in ids:
            batch = self.batches.find(batch_id)
            if batch is not None and (batch.status in BATCH_FINAL or not final_only):
                yield Occurrence(
                    batch.tenant,
                    "batch.completed",
                    batch.id,
                    batch.to_public(),
                    batch.callback_url,
                )


def _deliveries(
    event: Event, occurrence: Occurrence, subscriptions: list[Subscription]
) -> list[tuple[Delivery, str | None]]:
    """(delivery, lane) for each subscription and the callback URL; lane None: not to send."""
    body = json.dumps(
        {"type": occurrence.event_type, "timestamp": event.timestamp, "data": occurrence.data}
    )
    tenant = occurrence.tenant

    def delivery(target: str, url: str, webhook_id: str | None) -> Delivery:
        return Delivery(
            id=delivery_id_for(occurrence.event_type, occurrence.subject, target),
            tenant=tenant,
            url=url,
            event_type=occurrence.event_type,
            body=body,
            webhook_id=webhook_id,
        )

    pairs: list[tuple[Delivery, str | None]] = []
    for sub in subscriptions:
        if sub.created_at > event.timestamp:
            # Subscribed after the event happened (its fan-out came late, e.g. webhook workers
            # were down): as with Stripe, an endpoint gets the events from its creation on.
            continue
        made = delivery(sub.id, sub.url, sub.id)
        if sub.status == ACTIVE:
            pairs.append((made, lane_of(tenant, sub.url)))
        else:
            made.status = SKIPPED
            made.last_error = f"not sent: the webhook was disabled ({sub.disabled_reason})"
            pairs.append((made, None))
    if occurrence.callback_url:
        url = occurrence.callback_url
        pairs.append((delivery(CALLBACK, url, None), lane_of(tenant, url)))
    return pairs
