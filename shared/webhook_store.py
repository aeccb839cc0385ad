"""WebhookStore: a tenant's subscriptions (`{url, events}` with their own `whsec_` secret) and
the tenant's signing secret for `callback_url`s."""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys
from shared.errors import BadRequest, NotFound
from shared.jobs import utc_now
from shared.redis_client import text

EVENTS = ("job.succeeded", "job.failed", "batch.completed", "job.corrected")
ACTIVE = "active"
DISABLED = "disabled"
_ENABLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
redis.call('HDEL', KEYS[1], 'disabled_reason')
return 1
"""


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def parse_events(value: Any) -> list[str]:
    """`events`: a non-empty list of known event types."""
    if not isinstance(value, list) or not value or not all(isinstance(e, str) for e in value):
        raise BadRequest(f"events must be a non-empty list drawn from {', '.join(EVENTS)}")
    unknown = sorted(set(value) - set(EVENTS))
    if unknown:
        raise BadRequest(f"unknown event(s) {', '.join(unknown)}; choose from {', '.join(EVENTS)}")
    return sorted(set(value), key=EVENTS.index)


@dataclass
class Subscription:
    """One endpoint of a tenant, with the events it wants."""

    id: str
    tenant: str
    url: str
    events: list[str]
    secret: str
    status: str = ACTIVE
    disabled_reason: str | None = None
    created_at: str = field(default_factory=utc_now)

    def to_public(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The subscription as the API shows it; the secret only once, at creation."""
        body = {
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "status": self.status,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
        }
        if with_secret:
            body["secret"] = self.secret
        return body


class WebhookStore:
    """Subscriptions and tenant secrets in Redis."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        self._enable = conn.register_script(_ENABLE)

    def create(self, tenant: str, url: str, events: list[str]) -> Subscription:
        """A new active subscription with a fresh secret."""
        sub = Subscription(
            id="wh_" + uuid.uuid4().hex, tenant=tenant, url=url, events=events, secret=new_secret()
        )
        fields: dict[Any, Any] = {
            "id": sub.id,
            "tenant": tenant,
            "url": url,
            "events": json.dumps(events),
            "secret": sub.secret,
            "status": ACTIVE,
            "created_at": sub.created_at,
        }
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hset(keys.webhook(sub.id), mapping=fields)
            pipe.sadd(keys.tenant_webhooks(tenant), sub.id)
            pipe.execute()
        return sub

    def find(self, webhook_id: str) -> Subscription | None:
        """The subscription whatever its tenant (`get` checks it), or None when there is none."""
        raw = {text(k): text(v) for k, v in self.conn.hgetall(keys.webhook(webhook_id)).items()}
        if not raw:
            return None
        return Subscription(
            id=raw["id"],
            tenant=raw["tenant"],
            url=raw["url"],
            events=json.loads(raw["events"]),
            secret=raw["secret"],
            status=raw["status"],
            disabled_reason=raw.get("disabled_reason"),
            created_at=raw["created_at"],
        )

    def get(self, webhook_id: str, tenant: str) -> Subscription:
        """The tenant's subscription; another tenant's is reported as missing."""
        sub = self.find(webhook_id)
        if sub is None or sub.tenant != tenant:
            raise NotFound(f"no webhook with id {webhook_id!r}")
        return sub

    def of_tenant(self, tenant: str) -> list[Subscription]:
        """Every subscription of the tenant, oldest first."""
        ids = sorted(text(i) for i in self.conn.smembers(keys.tenant_webhooks(tenant)))
        subs = [s for s in (self.find(i) for i in ids) if s is not None]
        return sorted(subs, key=lambda s: s.created_at)

    def subscribers(self, tenant: str, event: str) -> list[Subscription]:
        """Subscriptions of the tenant that want `event`, disabled ones too (their log keeps what
        they missed, to replay once re-enabled)."""
        return [s for s in self.of_tenant(tenant) if event in s.events]

    def delete(self, webhook_id: str, tenant: str) -> None:
        """Remove a subscription (its pending deliveries are skipped)."""
        self.get(webhook_id, tenant)
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.delete(keys.webhook(webhook_id))
            pipe.srem(keys.tenant_webhooks(tenant), webhook_id)
            pipe.execute()

    def disable(self, webhook_id: str, reason: str) -> None:
        """Stop delivering to this endpoint, and say why."""
        if self.conn.exists(keys.webhook(webhook_id)):
            self.conn.hset(
                keys.webhook(webhook_id), mapping={"status": DISABLED, "disabled_reason": reason}
            )

    def enable(self, webhook_id: str, tenant: str) -> Subscription:
        """Deliver to this endpoint again (after a 410, or failing for the whole schedule)."""
        self.get(webhook_id, tenant)
        self._enable(keys=[keys.webhook(webhook_id)], args=[ACTIVE])  # unless deleted meanwhile
        return self.get(webhook_id, tenant)

    def tenant_secret(self, tenant: str) -> str:
        """The tenant's secret for signing `callback_url` deliveries (created on first use)."""
        self.conn.set(keys.tenant_secret(tenant), new_secret(), nx=True)
        return text(self.conn.get(keys.tenant_secret(tenant)) or b"")
