"""Services: the per-app objects the blueprints use (Redis, stores, the Celery producer)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from shared.admission import Admission
from shared.api_keys import KeyStore
from shared.batch_store import BatchStore
from shared.blobs import open_blob_store
from shared.delivery_store import DeliveryStore
from shared.endpoint_lanes import EndpointLanes
from shared.event_store import EventStore
from shared.events import EventEmitter
from shared.job_store import JobStore
from shared.queues import make_celery
from shared.redis_client import connect
from shared.settings import Settings
from shared.singles import SinglesQueue
from shared.webhook_store import WebhookStore
from shared.workers import WorkerRegistry


@dataclass
class Services:
    """Everything a request handler needs, created once per app."""

    settings: Settings
    conn: redis.Redis
    jobs: JobStore
    batches: BatchStore
    workers: WorkerRegistry
    celery: Celery
    webhooks: WebhookStore
    deliveries: DeliveryStore
    events: EventEmitter
    lanes: EndpointLanes
    keys: KeyStore
    singles: SinglesQueue
    admission: Admission

    @classmethod
    def create(cls, settings: Settings) -> Services:
        """Connect lazily: nothing here talks to Redis until the first request."""
        conn = connect(settings)
        jobs = JobStore(
            conn,
            result_ttl=settings.result_ttl,
            image_ttl=settings.image_ttl,
            blobs=open_blob_store(settings),
        )
        celery = make_celery(settings)
        webhooks, deliveries = WebhookStore(conn), DeliveryStore(conn)
        return cls(
            settings=settings,
            conn=conn,
            jobs=jobs,
            batches=BatchStore(conn, jobs),
            workers=WorkerRegistry(conn),
            celery=celery,
            webhooks=webhooks,
            deliveries=deliveries,
            events=EventEmitter(celery, EventStore(conn)),
            lanes=EndpointLanes(conn, concurrency=settings.webhook_endpoint_concurrency),
            keys=KeyStore(conn),
            singles=SinglesQueue(conn, lease_seconds=settings.visibility_timeout),
            admission=Admission(
                conn,
                rate=settings.rate_limit,
                burst=settings.rate_burst,
                max_queued=settings.max_queued,
            ),
        )


def services() -> Services:
    """The services of the current app."""
    return current_app.extensions["skuai"]
