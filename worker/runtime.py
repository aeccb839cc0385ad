"""Runtime: what one worker process holds — its Redis connection, stores and loaded cascade —
created after the fork and announced to the cluster by a heartbeat thread."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, cast

from celery import Celery

from shared.batch_store import BatchStore
from shared.blobs import open_blob_store
from shared.delivery_store import DeliveryStore
from shared.endpoint_lanes import EndpointLanes
from shared.event_store import EventStore
from shared.events import EventEmitter
from shared.job_store import JobStore
from shared.metrics import ClusterMetrics
from shared.redis_client import connect
from shared.settings import Settings
from shared.singles import SinglesQueue
from shared.url_guard import guarded_session
from shared.webhook_store import WebhookStore
from shared.workers import HEARTBEAT_TTL, WorkerRegistry
from training.registry import Registry
from worker import retrain
from worker.decode_pool import DecodePool, decode_threads
from worker.delivery import DeliveryPolicy, WebhookDelivery
from worker.fan_out import FanOut
from worker.fetch import ImageFetcher
from worker.model_cache import ModelCache

if TYPE_CHECKING:
    from training.cascade import Cascade
    from worker.celery_app import WorkerApp

log = logging.getLogger(__name__)
HEARTBEAT_INTERVAL = HEARTBEAT_TTL / 3
SWEEP_INTERVAL = HEARTBEAT_INTERVAL  # one pass per this many seconds across the cluster


class Runtime:
    """Per-process resources of a worker."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.conn = connect(settings, ride_out_failover=True)  # a chunk finishes across a failover
        self.store = JobStore(
            self.conn,
            result_ttl=settings.result_ttl,
            image_ttl=settings.image_ttl,
            blobs=open_blob_store(settings),
        )
        self.batches = BatchStore(self.conn, self.store)
        self.registry = Registry(settings.registry_dir)
        self.workers = WorkerRegistry(self.conn)
        self.metrics = ClusterMetrics(self.conn)
        self.singles = SinglesQueue(self.conn, lease_seconds=settings.visibility_timeout)
        self.webhooks = WebhookStore(self.conn)
        self.deliveries = DeliveryStore(self.conn)
        self.events = EventStore(self.conn)
        self.lanes = EndpointLanes(self.conn, concurrency=settings.webhook_endpoint_concurrency)
        self.fetcher = ImageFetcher(
            max_bytes=settings.max_image_bytes, allow_private=settings.allow_private_urls
        )
        self.models = ModelCache(self.registry, self.conn, precision=settings.inference_precision)
        # Threads start on first use, in this (forked) process; webhook workers never start any.
        self.decoder = DecodePool(decode_threads(settings.decode_threads))
        self._stopped = threading.Event()
        self._serves_model = False
        self._delivery: WebhookDelivery | None = None

    def emitter(self, app: Celery) -> EventEmitter:
        """Records job and batch events for the webhook workers to fan out."""
        return EventEmitter(app, self.events)

    def fan_out(self, app: Celery) -> FanOut:
        """Turns a recorded event into webhook deliveries."""
        return FanOut(
            self.events,
            self.store,
            self.batches,
            self.webhooks,
            self.deliveries,
            self.lanes,
            self.emitter(app).send,
        )

    def delivery(self, app: Celery) -> WebhookDelivery:
        """Makes webhook delivery attempts (guarded HTTP, the configured schedule)."""
        if self._delivery is None:
            policy = DeliveryPolicy(
                schedule=self.settings.webhook_retry_schedule,
                timeout=float(self.settings.webhook_timeout),
            )
            session = guarded_session(allow_private=self.settings.allow_private_urls)
            self._delivery = WebhookDelivery(
                self.deliveries,
                self.webhooks,
                self.lanes,
                session,
                policy,
                self.metrics,
                self.emitter(app).send,
            )
        return self._delivery

    def cascade(self, batch_id: str | None = None) -> Cascade:
        """The cascade for a chunk (its batch's pinned version, else the active one)."""
        return self.models.for_chunk(batch_id)

    def start_heartbeat(self, app: Celery, serves_model: bool) -> None:
        """Announce this process every few seconds until `stop()`; inference workers also sweep,
        on a thread of their own so that a sweep never delays a heartbeat (and readiness)."""
        self._serves_model = serves_model
        threading.Thread(target=self._beat, name="skuai-heartbeat", daemon=True).start()
        if serves_model:
            sweep = threading.Thread(
                target=self._sweep, args=(app,), name="skuai-sweeper", daemon=True
            )
            sweep.start()

    def _beat(self) -> None:
        while not self._stopped.is_set():
            try:
                loaded = self.models.versions
                self.workers.announce(
                    self.name,
                    {
                        "pid": os.getpid(),
                        "serves_model": self._serves_model,
                        "model_version": loaded[-1] if loaded else None,
                        "loaded_versions": loaded,
                    },
                )
            except Exception as exc:  # side channel: Redis may be down; keep beating
                log.warning("heartbeat failed: %s", exc)
            self._stopped.wait(HEARTBEAT_INTERVAL)

    def _sweep(self, app: Celery) -> None:
        """Single jobs leased by a worker that vanished go back in line, with a task each;
        abandoned uploads are rolled back; work whose message went missing is sent again."""
        from shared.queues import enqueue_singles_task
        from worker.sweeper import Sweeper

        sweeper = Sweeper(
            self.conn,
            app,
            self.batches,
            stale_after=2.0 * self.settings.visibility_timeout,
            upload_timeout=self.settings.upload_timeout,
            chunk_size=self.settings.chunk_size,
            every=SWEEP_INTERVAL,
            image_ttl=self.settings.image_ttl,
            archive_ttl=self.settings.result_archive_ttl,
        )
        while not self._stopped.is_set():
            try:
                for _ in range(self.singles.reclaim()):
                    enqueue_singles_task(app)
                sweeper.sweep()
                retrain.maybe_start(self)  # a few reads; the retrain itself runs on its own
            except Exception as exc:  # side channel: Redis may be down; try again next time
                log.warning("sweep failed: %s", exc)
            self._stopped.wait(SWEEP_INTERVAL)

    def stop(self) -> None:
        """Stop the heartbeat and withdraw this process from the live list."""
        self._stopped.set()
        self.decoder.close()
        try:
            self.workers.withdraw(self.name)
        except Exception as exc:  # shutting down: nothing left to do but say so
            log.warning("could not withdraw heartbeat: %s", exc)


def start(app: WorkerApp, *, load_model: bool) -> Runtime:
    """Build this process's runtime from the app's settings and keep it on the app; inference
    workers load the active model right away."""
    built = Runtime(app.settings, f"{app.node_name}:{os.getpid()}")
    app.runtime = built
    if load_model:
        log.info("decoding images on %d threads", built.decoder.threads)
        try:
            built.models.active()
        except Exception as exc:  # keep serving: tasks retry until a model is active
            log.error("no model loaded yet: %s", exc)
    built.start_heartbeat(app, serves_model=load_model)
    return built


def current(app: Celery) -> Runtime:
    """The runtime of this process, kept on its app (a task's `self.app`); built on first use
    where no pool-process signal ran (e.g. the solo pool)."""
    worker_app = cast("WorkerApp", app)
    return (
        worker_app.runtime
        if worker_app.runtime is not None
        else start(worker_app, load_model=False)
    )


def stop(app: WorkerApp) -> None:
    """Tear down this process's runtime."""
    if app.runtime is not None:
        app.runtime.stop()
