"""deliver: one attempt of one webhook delivery — sign per Standard Webhooks, POST, record the
attempt, and decide: done, retry later (backoff with jitter, honouring Retry-After), or give up
(410 Gone, or an endpoint failing for the whole schedule, disables the subscription)."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from standardwebhooks import Webhook

from shared.delivery_store import DELIVERED, FAILED, PENDING, SKIPPED, Delivery, DeliveryStore
from shared.jobs import utc_now
from shared.metrics import ClusterMetrics
from shared.webhook_store import ACTIVE, WebhookStore

log = logging.getLogger(__name__)
JITTER = 0.2  # each delay is stretched or shrunk by up to 20% so retries do not stampede
MAX_RETRY_AFTER = 24 * 3600.0


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
        session: requests.Session,
        policy: DeliveryPolicy,
        metrics: ClusterMetrics,
    ) -> None:
        self.metrics = metrics
        self.deliveries = deliveries
        self.webhooks = webhooks
        self.session = session
        self.policy = policy

    def attempt(self, delivery_id: str) -> str:
        """One attempt; returns the delivery's status afterwards."""
        outcome = self._attempt(delivery_id)
        self.metrics.count("skuai_webhook_deliveries", outcome=outcome)
        log.info("webhook delivery attempt: %s", outcome, extra={"delivery_id": delivery_id})
        return outcome

    def _attempt(self, delivery_id: str) -> str:
        delivery = self.deliveries.find(delivery_id)
        if delivery is None or delivery.status != PENDING:
            return delivery.status if delivery else SKIPPED
        secret = self._secret(delivery)
        if secret is None:
            self.deliveries.settle(delivery.id, SKIPPED)
            return SKIPPED
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
            return DELIVERED
        if status_code == 410 and delivery.webhook_id:
            self.webhooks.disable(delivery.webhook_id, "the endpoint answered 410 Gone")
            self.deliveries.settle(delivery.id, FAILED)
            return FAILED
        return self._retry_or_give_up(delivery, retry_after, error or f"HTTP {status_code}")

    def _secret(self, delivery: Delivery) -> str | None:
        if delivery.webhook_id is None:
            return self.webhooks.tenant_secret(delivery.tenant)
        sub = self.webhooks.find(delivery.webhook_id)
        return sub.secret if sub is not None and sub.status == ACTIVE else None

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

    def _retry_or_give_up(self, delivery: Delivery, retry_after: float | None, error: str) -> str:
        done = delivery.attempts + 1
        if done > len(self.policy.schedule):
            self.deliveries.settle(delivery.id, FAILED)
            if delivery.webhook_id:
                self.webhooks.disable(
                    delivery.webhook_id,
                    f"deliveries kept failing for {sum(self.policy.schedule):.0f} s "
                    f"({done} attempts); last error: {error}",
                )
            return FAILED
        delay = self.policy.schedule[done - 1] * random.uniform(1 - JITTER, 1 + JITTER)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        self.deliveries.schedule(delivery.id, time.time() + delay)
        return PENDING


def _retry_after(response: requests.Response) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _describe(exc: requests.RequestException) -> str:
    if "non-global address" in str(exc):
        return "refused: the URL resolves to a private or reserved address"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return exc.__class__.__name__
