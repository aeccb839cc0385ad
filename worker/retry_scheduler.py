"""DueDeliveries: a thread in each webhook worker's main process that hands out what is due — a
delivery whose (re)try time has come, an event whose fan-out was never sent or was lost, and the
next deliveries of endpoint lanes that have room again. All of it lives in Redis, so a restarted
worker — or any other webhook worker — picks up where a stopped one left off."""

from __future__ import annotations

import logging
import threading

from celery import Celery

from shared.delivery_store import DeliveryStore
from shared.endpoint_lanes import EndpointLanes
from shared.event_store import EventStore
from shared.queues import DELIVER, FAN_OUT, WEBHOOKS
from shared.settings import Settings

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class DueDeliveries(threading.Thread):
    """Polls the due schedules and the waiting lanes, and enqueues what may go."""

    def __init__(self, app: Celery, deliveries: DeliveryStore, settings: Settings) -> None:
        super().__init__(name="skuai-due-deliveries", daemon=True)
        self.app = app
        self.deliveries = deliveries
        self.events = EventStore(deliveries.conn)
        self.lanes = EndpointLanes(
            deliveries.conn, concurrency=settings.webhook_endpoint_concurrency
        )
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            try:
                self.hand_out()
            except Exception as exc:  # Redis away: the leases keep everything for later
                log.warning("could not read the delivery schedule: %s", exc)

    def hand_out(self) -> None:
        """One pass: due events, due deliveries, and lanes with room."""
        for event_id in self.events.take_due():
            self.app.send_task(FAN_OUT, args=[event_id], queue=WEBHOOKS)
        for delivery_id in self.deliveries.take_due():
            self.app.send_task(DELIVER, args=[delivery_id], queue=WEBHOOKS)
        for lane in self.lanes.waiting_lanes():
            for delivery_id in self.lanes.admit(lane):
                self.app.send_task(DELIVER, args=[delivery_id], queue=WEBHOOKS)
