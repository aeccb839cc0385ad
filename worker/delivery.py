"""deliver: one attempt of one webhook delivery — take a slot in the endpoint's lane (or wait
in it), sign per Standard Webhooks, POST, record the attempt, and decide: done, retry later
(backoff with jitter, honouring Retry-After), or give up (410 Gone, or an endpoint failing for the
whole schedule, disables the subscription). Then free the slot for the lane's next delivery."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from standardwebhooks import Webhook

from shared.delivery_store import DELIVERED, FAILED, PENDING, SKIPPED, Delivery, DeliveryStore
from shared.endpoint_lanes import FAILING, HEALTHY, NEUTRAL, EndpointLanes, lane_of
from shared.jobs import utc_now
from shared.metrics import ClusterMetrics
from shared.webhook_store import ACTIVE, WebhookStore

log = logging.getLogger(__name__)
JITTER = 0.2  # each delay is stretched or shrunk by up to 20% so retries do not stampede
MAX_RETRY_AFTER = 24 * 3600.0
SLOT_MARGIN = 30.0  # a slot outlives its attempt's timeout by this much, then lapses on its own
WAITING = "waiting"  # the attempt was not made: the delivery waits in its endpoint's lane
INLINE_SECONDS = 1.0  # a task goes on with its lane's next deliveries this long, then queues them


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry schedule (seconds between attempts) and the request timeout."""

    schedule: tuple[float, ...]
    timeout: float


class WebhookDelivery:
    """Makes attempts for deliveries, using a guarded HTTP session."""

    def __init__(
        self,
        deliveries: DeliveryStore,
        webhooks: WebhookStore,
        lanes: EndpointLanes,
        session: requests.Session,
        policy: DeliveryPolicy,
        metrics: ClusterMetrics,
        send: Callable[[str], None],
    ) -> None:
        self.metrics = metrics
        self.deliveries = deliveries
        self.webhooks = webhooks
        self.lanes = lanes
        self.session = session
        self.policy = policy
        self.send = send

    def attempt(self, delivery_id: str) -> str:
        """One attempt, then — for up to INLINE_SECONDS — the next ones its lane lets go, without
        a trip through the queue each. Returns the first delivery's status (or WAITING)."""
        deadline = time.monotonic() + INLINE_SECONDS
        first: str | None = None
        next_id: str | None = delivery_id
        while next_id is not None:
            current = next_id
            outcome, next_id = self._attempt(current, keep_next=time.monotonic() < deadline)
            if outcome != WAITING:
                self.metrics.count("skuai_webhook_deliveries", outcome=outcome)
            log.info("webhook delivery attempt: %s", outcome, extra={"delivery_id": current})
            first = first or outcome
        return first or SKIPPED

    def _attempt(self, delivery_id: str, *, keep_next: bool) -> tuple[str, str | None]:
        """One attempt: its outcome, and the lane's next delivery if kept for this process."""
        delivery = self.deliveries.find(delivery_id)
        if delivery is None:
            return SKIPPED, None
        lane = lane_of(delivery.tenant, delivery.url)
        if delivery.status != PENDING:  # settled meanwhile: its slot, if any, goes to the next
            return delivery.status, self._free(lane, delivery.id, NEUTRAL, keep_next=keep_next)
        secret, reason = self._secret(delivery)
        if secret is None:
            self.deliveries.settle(delivery.id, SKIPPED, reason=reason)
            return SKIPPED, self._free(lane, delivery.id, NEUTRAL, keep_next=keep_next)
        hold = self.policy.timeout + SLOT_MARGIN
        if not self.lanes.acquire(lane, delivery.id, hold, place=_epoch(delivery.created_at)):
            return WAITING, None
        status, health, blocked_until = self._deliver(delivery, secret)
        return status, self._free(lane, delivery.id, health, blocked_until, keep_next=keep_next)

    def _free(
        self,
        lane: str,
        delivery_id: str,
        health: str,
        blocked_until: float = 0.0,
        *,
        keep_next: bool,
    ) -> str | None:
        """Give the slot back and send what the lane lets go now (keeping the first, if asked:
        it is leased to this process already, and handed out again if the process dies)."""
        self.lanes.release(lane, delivery_id, health, blocked_until)
        admitted = self.lanes.admit(lane)
        kept = admitted.pop(0) if keep_next and admitted else None
        for next_id in admitted:
            self.send(next_id)
        return kept

    def _deliver(self, delivery: Delivery, secret: str) -> tuple[str, str, float]:
        """POST and decide; returns the status, what it says of the endpoint, and until when
        the endpoint's lane waits."""
        status_code, retry_after, error, latency = self._post(delivery, secret)
        self.deliveries.record_attempt(
            delivery.id,
            {
                "at": utc_now(),
                "status_code": status_code,
                "latency_ms": round(latency * 1000, 1),
                "error": error,
            },
        )
        if status_code is not None and 200 <= status_code < 300:
            self.deliveries.settle(delivery.id, DELIVERED)
            return DELIVERED, HEALTHY, 0.0
        if status_code == 410 and delivery.webhook_id:
            self.webhooks.disable(delivery.webhook_id, "the endpoint answered 410 Gone")
            self.deliveries.settle(delivery.id, FAILED)
            return FAILED, NEUTRAL, 0.0
        status, next_at = self._retry_or_give_up(
            delivery, retry_after, error or f"HTTP {status_code}"
        )
        if status_code is None or status_code >= 500 or status_code == 429:
            # The endpoint is unavailable, not this payload: the lane waits for this retry.
            return status, FAILING, next_at or time.time() + self.policy.schedule[0]
        return status, NEUTRAL, 0.0

    def _secret(self, delivery: Delivery) -> tuple[str | None, str]:
        """The signing secret, or None and why the delivery is skipped."""
        if delivery.webhook_id is None:
            return self.webhooks.tenant_secret(delivery.tenant), ""
        sub = self.webhooks.find(delivery.webhook_id)
        if sub is None:
            return None, "not sent: the webhook was deleted"
        if sub.status != ACTIVE:
            return None, f"not sent: the webhook was disabled ({sub.disabled_reason})"
        return sub.secret, ""

    def _post(
        self, delivery: Delivery, secret: str
    ) -> tuple[int | None, float | None, str | None, float]:
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(delivery.id, now, delivery.body),
            "user-agent": "skuai-webhooks/1",
        }
        began = time.perf_counter()
        try:
            response = self.session.post(
                delivery.url,
                data=delivery.body.encode(),
                headers=headers,
                timeout=self.policy.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return None, None, _describe(exc), time.perf_counter() - began
        latency = time.perf_counter() - began
        response.close()
        error = None if response.ok else f"HTTP {response.status_code}"
        if 300 <= response.status_code < 400:
            error = f"HTTP {response.status_code}: redirects are not followed"
        return response.status_code, _retry_after(response), error, latency

    def _retry_or_give_up(
        self, delivery: Delivery, retry_after: float | None, error: str
    ) -> tuple[str, float | None]:
        done = delivery.attempts + 1
        if done > len(self.policy.schedule):
            self.deliveries.settle(delivery.id, FAILED)
            if delivery.webhook_id:
                self.webhooks.disable(
                    delivery.webhook_id,
                    f"deliveries kept failing for {sum(self.policy.schedule):.0f} s "
                    f"({done} attempts); last error: {error}",
                )
            return FAILED, None
        delay = self.policy.schedule[done - 1] * random.uniform(1 - JITTER, 1 + JITTER)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        next_at = time.time() + delay
        self.deliveries.schedule(delivery.id, next_at)
        return PENDING, next_at


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit alone: "²" is a digit to it
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None  # anything else is ignored: the schedule's own delay applies


def _epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO time (now, if it does not parse)."""
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _describe(exc: requests.RequestException) -> str:
    if "non-global address" in str(exc):
        return "refused: the URL resolves to a private or reserved address"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return exc.__class__.__name__
