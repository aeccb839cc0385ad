"""Per-process start and stop: which processes load a model, and when.

The parent worker process never touches TensorFlow; each pool process builds its runtime
(Redis connection, model) in `worker_process_init`, i.e. after the fork, so no TensorFlow state
is ever inherited across a fork. Every handler takes the settings from the app it belongs to."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from billiard.process import current_process
from celery.signals import (
    celeryd_after_setup,
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from shared.delivery_store import DeliveryStore
from shared.logs import configure_logging
from shared.queues import MODEL_QUEUES, WEBHOOKS
from shared.redis_client import connect
from worker import runtime
from worker.devices import pin_process
from worker.retry_scheduler import DueDeliveries

if TYPE_CHECKING:
    from worker.celery_app import WorkerApp

log = logging.getLogger(__name__)


class Lifecycle:
    """The signal handlers of one worker app; pool processes inherit this object by forking."""

    def __init__(self, app: WorkerApp) -> None:
        self.app = app
        self.consumes_model_queues = False
        self.consumes_webhooks = False
        self.scheduler: DueDeliveries | None = None

    def connect(self) -> None:
        """Connect every handler (held strongly: bound methods would otherwise be collected)."""
        for signal, handler in (
            (setup_logging, self.configure_logging),
            (celeryd_after_setup, self.remember_queues),
            (worker_process_init, self.start_process),
            (worker_process_shutdown, self.stop_process),
            (worker_ready, self.start_scheduler),
            (worker_shutdown, self.stop_scheduler),
        ):
            signal.connect(handler, weak=False)

    def configure_logging(self, **_: Any) -> None:
        """Our format for Celery's own lines too (connecting this stops Celery configuring it)."""
        configure_logging(self.app.settings.log_level, self.app.settings.log_format)

    def remember_queues(self, sender: str, instance: Any, **_: Any) -> None:
        """In the parent: note whether this worker serves inference queues (children inherit it)."""
        queues = set(instance.app.amqp.queues.consume_from or ())
        self.consumes_model_queues = bool(queues & MODEL_QUEUES)
        self.consumes_webhooks = WEBHOOKS in queues
        self.app.node_name = sender

    def start_process(self, **_: Any) -> None:
        """In each pool process: pin its GPU, connect to Redis and, for inference workers, load
        the model."""
        if slow_start := self.app.failpoints.slow_start:  # tests only (worker/failpoints.py)
            time.sleep(slow_start)
        device = pin_process(current_process().index)
        if device is not None:
            log.info("pool process %d uses GPU %s", current_process().index, device)
        runtime.start(self.app, load_model=self.consumes_model_queues)

    def stop_process(self, **_: Any) -> None:
        """In each pool process: withdraw its heartbeat."""
        runtime.stop(self.app)

    def start_scheduler(self, sender: Any, **_: Any) -> None:
        """In a webhook worker's main process: start handing out due (re)tries."""
        if self.consumes_webhooks:
            settings = self.app.settings
            self.scheduler = DueDeliveries(self.app, DeliveryStore(connect(settings)), settings)
            self.scheduler.start()

    def stop_scheduler(self, **_: Any) -> None:
        """In a webhook worker's main process: stop the scheduler."""
        if self.scheduler is not None:
            self.scheduler.stopped.set()
