"""Per-process start and stop: which processes load a model, and when.

The parent worker process never touches TensorFlow; each pool process builds its runtime
(Redis connection, model) in `worker_process_init`, i.e. after the fork, so no TensorFlow state
is ever inherited across a fork."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

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
from shared.settings import Settings
from worker import runtime
from worker.devices import pin_process
from worker.retry_scheduler import DueDeliveries

log = logging.getLogger(__name__)
# Fault injection for the reliability tests only: each pool process takes this many seconds
# longer to start (as TensorFlow does on a busy machine). Never set in production.
SLOW_START = float(os.environ.get("SKUAI_FAILPOINT_SLOW_START", "0"))
_consumes_model_queues = False
_consumes_webhooks = False
_scheduler: DueDeliveries | None = None


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    """Our format for Celery's own lines too (connecting this stops Celery configuring it)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)


@celeryd_after_setup.connect
def _remember_queues(sender: str, instance: Any, **_: Any) -> None:
    """In the parent: note whether this worker serves inference queues (children inherit it)."""
    global _consumes_model_queues, _consumes_webhooks
    queues = set(instance.app.amqp.queues.consume_from or ())
    _consumes_model_queues = bool(queues & MODEL_QUEUES)
    _consumes_webhooks = WEBHOOKS in queues
    runtime.set_worker_name(sender)


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    """In each pool process: pin its GPU, connect to Redis and, for inference workers, load the
    model."""
    if SLOW_START:
        time.sleep(SLOW_START)
    device = pin_process(current_process().index)
    if device is not None:
        log.info("pool process %d uses GPU %s", current_process().index, device)
    runtime.start(load_model=_consumes_model_queues)


@worker_process_shutdown.connect
def _stop_process(**_: Any) -> None:
    runtime.stop()


@worker_ready.connect
def _start_scheduler(sender: Any, **_: Any) -> None:
    """In a webhook worker's main process: start handing out due (re)tries."""
    global _scheduler
    if _consumes_webhooks:
        settings = Settings.from_env()
        _scheduler = DueDeliveries(sender.app, DeliveryStore(connect(settings)), settings)
        _scheduler.start()


@worker_shutdown.connect
def _stop_scheduler(**_: Any) -> None:
    if _scheduler is not None:
        _scheduler.stopped.set()
