"""EventEmitter: turns job and batch outcomes into webhook deliveries (one per subscriber and
callback URL) and hands them to the webhook queue. Emitting never blocks inference: it writes to
Redis and sends a message; the delivery itself happens on the webhook workers."""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import Celery

from shared.batches import Batch
from shared.delivery_store import Delivery, DeliveryStore, new_delivery_id
from shared.jobs import FAILED, SUCCEEDED, Job, utc_now
from shared.queues import DELIVER, WEBHOOKS
from shared.webhook_store import Subscription, WebhookStore

log = logging.getLogger(__name__)
JOB_EVENTS = {SUCCEEDED: "job.succeeded", FAILED: "job.failed"}


class EventEmitter:
    """Creates deliveries for an event and enqueues them."""

    def __init__(self, celery: Celery, webhooks: WebhookStore, deliveries: DeliveryStore) -> None:
        self.celery = celery
        self.webhooks = webhooks
        self.deliveries = deliveries

    def emit(
        self,
        tenant: str,
        event_type: str,
        data: dict[str, Any],
        callback_url: str | None = None,
        subscribers: list[Subscription] | None = None,
    ) -> list[str]:
        """Deliver `event_type` to the tenant's subscribers and to `callback_url`, if any."""
        if subscribers is None:
            subscribers = self.webhooks.subscribers(tenant, event_type)
        targets: list[tuple[str | None, str]] = [(sub.id, sub.url) for sub in subscribers]
        if callback_url:
            targets.append((None, callback_url))
        if not targets:
            return []
        body = json.dumps({"type": event_type, "timestamp": utc_now(), "data": data})
        ids = []
        for webhook_id, url in targets:
            delivery = Delivery(
                id=new_delivery_id(),
                tenant=tenant,
                url=url,
                event_type=event_type,
                body=body,
                webhook_id=webhook_id,
            )
            self.deliveries.create(delivery)
            self.send(delivery.id)
            ids.append(delivery.id)
        return ids

    def send(self, delivery_id: str) -> None:
        """Hand a delivery to the webhook queue; if that fails its lease brings it back."""
        try:
            self.celery.send_task(DELIVER, args=[delivery_id], queue=WEBHOOKS)
        except Exception as exc:  # side channel: the due schedule retries it
            log.warning(
                "could not enqueue delivery %s now (%s); it will be retried", delivery_id, exc
            )

    def job_events(self, jobs: list[Job]) -> None:
        """`job.succeeded` / `job.failed` for each finished job."""
        # A chunk's jobs mostly share a tenant: look its subscriptions up once, not per job.
        subscribers: dict[tuple[str, str], list[Subscription]] = {}
        for job in jobs:
            event = JOB_EVENTS.get(job.status)
            if event is None:
                continue
            key = (job.tenant, event)
            if key not in subscribers:
                subscribers[key] = self.webhooks.subscribers(job.tenant, event)
            self.emit(job.tenant, event, job.to_public(), job.callback_url, subscribers[key])

    def batch_completed(self, batch: Batch) -> None:
        """`batch.completed`, exactly once per batch (callers emit it on the completing call)."""
        self.emit(batch.tenant, "batch.completed", batch.to_public(), batch.callback_url)
