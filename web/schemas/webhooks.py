"""`/v1/webhooks` shapes: a subscription, and its delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field

from shared.webhook_store import parse_events
from web.schemas.common import Url

Event = Literal["job.succeeded", "job.failed", "batch.completed", "job.corrected"]


class WebhookCreate(BaseModel):
    """A URL and the events it wants."""

    url: Url = Field(description="a public http(s) URL")
    # The store's parser keeps its messages (and drops duplicates).
    events: Annotated[list[Event], BeforeValidator(parse_events)] = Field(min_length=1)


class Webhook(BaseModel):
    """A subscription; `secret` only in the answer to its creation."""

    id: str
    url: str
    events: list[Event]
    status: Literal["active", "disabled"]
    disabled_reason: str | None
    created_at: str
    secret: str | None = Field(None, description="only in the answer to the creation")


class WebhookList(BaseModel):
    """The tenant's subscriptions, without secrets."""

    items: list[Webhook]


class Attempt(BaseModel):
    """One try to deliver."""

    at: str
    status_code: int | None
    latency_ms: float
    error: str | None


class Delivery(BaseModel):
    """One event sent (or to send) to one endpoint, with every attempt."""

    id: str
    event_type: str
    url: str
    status: Literal["pending", "delivered", "failed", "skipped"]
    created_at: str
    next_attempt_at: float | None
    last_error: str | None
    attempts: list[Attempt]


class DeliveryList(BaseModel):
    """A subscription's delivery log, newest first."""

    items: list[Delivery]
