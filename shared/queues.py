"""Queue and task names, and the Celery configuration both the API and the workers use.

The API enqueues by task *name* through a Celery app that has no tasks registered, so it
never imports the worker code (or TensorFlow)."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from kombu import Queue

from shared.redis_client import broker_url, sentinel_transport_options
from shared.settings import Settings

INTERACTIVE = "interactive"  # single-image jobs: latency matters
INFERENCE = "inference"  # batch chunks: throughput matters
WEBHOOKS = "webhooks"  # deliveries: slow endpoints must never delay inference
ALL_QUEUES = (INTERACTIVE, INFERENCE, WEBHOOKS)
MODEL_QUEUES = frozenset({INTERACTIVE, INFERENCE})

CLASSIFY = "skuai.classify"
CLASSIFY_SINGLES = "skuai.classify_singles"
DELIVER = "skuai.deliver_webhook"
FAN_OUT = "skuai.fan_out_event"


POOL_PROCESS_START_TIMEOUT = 300.0  # seconds a new pool process may take to start
BRPOP_SECONDS = 1  # how long a worker's BRPOP waits for a message (Kombu's brpop_timeout)


def make_celery(settings: Settings, *, include: tuple[str, ...] = ()) -> Celery:
    """The Celery app configured for this service; workers pass the task modules in `include`."""
    app = Celery("skuai", broker=broker_url(settings), include=list(include))
    app.conf.update(celery_config(settings, consumes=bool(include)))
    return app


def celery_config(settings: Settings, *, consumes: bool) -> dict[str, Any]:
    """The Celery configuration of this service; `consumes`: for an app that runs tasks."""
    return dict(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in the JobStore, not in Celery's backend
        result_backend=None,
        task_acks_late=True,  # a task is acknowledged only after its results are stored
        task_reject_on_worker_lost=True,  # ...and redelivered if its worker dies mid-run
        worker_prefetch_multiplier=1,
        # A pool process loads TensorFlow and the model before it reports up; past Celery's
        # default 4 s (a busy CPU, a GPU initialising) it would be killed and forked again forever.
        worker_proc_alive_timeout=POOL_PROCESS_START_TIMEOUT,
        task_queues=[Queue(name) for name in ALL_QUEUES],
        task_default_queue=INFERENCE,
        task_routes={
            CLASSIFY: {"queue": INFERENCE},
            CLASSIFY_SINGLES: {"queue": INTERACTIVE},
            DELIVER: {"queue": WEBHOOKS},
            FAN_OUT: {"queue": WEBHOOKS},
        },
        broker_transport_options={
            # Work held by a vanished worker is handed to another after this long.
            "visibility_timeout": settings.visibility_timeout,
            # Look for such work on every poll, not every tenth (Kombu's default).
            "unacked_restore_throttle": 1,
            # Workers (the apps that run tasks) wait in BRPOP up to BRPOP_SECONDS by design;
            # the API only publishes, which waits SKUAI_REDIS_TIMEOUT at most.
            "socket_timeout": settings.redis_timeout + (BRPOP_SECONDS if consumes else 0),
            "socket_connect_timeout": settings.redis_timeout,
            **sentinel_transport_options(settings),  # master_name etc. for sentinel://
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # workers wait for Redis to come back
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
        worker_send_task_events=True,  # for Flower
        # Recycle a pool process whose memory grew past the limit (checked after each task).
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        broker_connection_timeout=5,
    )


def enqueue_classify(
    app: Celery, job_ids: list[str], *, queue: str, batch_id: str | None = None
) -> None:
    """Send one classify task for these jobs; the message carries ids only, never pixels."""
    app.send_task(
        CLASSIFY,
        args=[job_ids],
        kwargs={"batch_id": batch_id},
        queue=queue,
        headers={"skuai_enqueued_at": time.time()},
    )


def enqueue_singles_task(app: Celery) -> None:
    """One more task for the single-image line (each single job sends exactly one)."""
    app.send_task(CLASSIFY_SINGLES, queue=INTERACTIVE, headers={"skuai_enqueued_at": time.time()})
