"""DueDeliveries: a thread in each webhook worker's main process that hands deliveries whose
(re)try time has come to the webhook queue. The schedule lives in Redis, so a restarted worker —
or any other webhook worker — picks up where a stopped one left off."""

from __future__ import annotations

import logging
import threading

from celery import Celery

from shared.delivery_store import DeliveryStore
from shared.queues import DELIVER, WEBHOOKS

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class DueDeliveries(threading.Thread):
    """Polls the due schedule and enqueues what is due."""

    def __init__(self, app: Celery, deliveries: DeliveryStore) -> None:
        super().__init__(name="skuai-due-deliveries", daemon=True)
        self.app = app
        self.deliveries = deliveries
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            try:
                for delivery_id in self.deliveries.take_due():
                    self.app.send_task(DELIVER, args=[delivery_id], queue=WEBHOOKS)
            except Exception as exc:  # Redis away: the leases keep everything for later
                log.warning("could not read the delivery schedule: %s", exc)
