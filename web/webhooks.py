"""`/v1/webhooks`: subscriptions, their delivery log, replay, and re-enabling."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify, request

from shared.delivery_store import LEASE_SECONDS, PENDING
from shared.endpoint_lanes import lane_of
from shared.errors import Conflict, NotFound
from shared.url_guard import check_url
from shared.webhook_store import ACTIVE
from web.openapi import declare
from web.schemas.webhooks import Delivery, DeliveryList, Webhook, WebhookCreate, WebhookList
from web.services import services
from web.tenancy import current_tenant
from web.uploads import json_body
from web.validation import validated

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


@bp.post("")
@declare(
    json=WebhookCreate,
    ok={201: (Webhook, "The subscription, with its secret")},
    errors=(400, 408, 413, 503),
    operation_id="createWebhook",
)
def create_webhook() -> tuple[Response, int, dict[str, str]]:
    """Subscribe a URL to events; the signing secret is returned this once."""
    svc = services()
    body = validated(WebhookCreate, json_body(request))
    url = check_url(body.url, allow_private=svc.settings.allow_private_urls)
    sub = svc.webhooks.create(current_tenant(), url, list(body.events))
    return jsonify(sub.to_public(with_secret=True)), 201, {"Location": f"/v1/webhooks/{sub.id}"}


@bp.get("")
@declare(
    ok={200: (WebhookList, "Subscriptions (no secrets)")},
    errors=(503,),
    operation_id="listWebhooks",
)
def list_webhooks() -> Response:
    """The tenant's subscriptions (without secrets)."""
    subs = services().webhooks.of_tenant(current_tenant())
    return jsonify({"items": [s.to_public() for s in subs]})


@bp.get("/<webhook_id>")
@declare(ok={200: (Webhook, "The subscription")}, errors=(404, 503), operation_id="getWebhook")
def get_webhook(webhook_id: str) -> Response:
    """One subscription, with its status and why it was disabled, if it was."""
    return jsonify(services().webhooks.get(webhook_id, current_tenant()).to_public())


@bp.delete("/<webhook_id>")
@declare(ok={204: (None, "Deleted")}, errors=(404, 503), operation_id="deleteWebhook")
def delete_webhook(webhook_id: str) -> tuple[str, int]:
    """Unsubscribe; deliveries still pending for the subscription are skipped."""
    services().webhooks.delete(webhook_id, current_tenant())
    return "", 204


@bp.post("/<webhook_id>/enable")
@declare(
    ok={200: (Webhook, "The subscription, active again")},
    errors=(404, 503),
    operation_id="enableWebhook",
)
def enable_webhook(webhook_id: str) -> Response:
    """Deliver to a disabled subscription again; what it missed can then be replayed."""
    svc = services()
    sub = svc.webhooks.enable(webhook_id, current_tenant())
    # Its owner says the endpoint is fixed: forget the failures that paused its lane.
    svc.lanes.reopen(lane_of(sub.tenant, sub.url))
    return jsonify(sub.to_public())


@bp.get("/<webhook_id>/deliveries")
@declare(
    ok={200: (DeliveryList, "Deliveries, newest first")},
    errors=(404, 503),
    operation_id="listDeliveries",
)
def list_deliveries(webhook_id: str) -> Response:
    """The delivery log: each delivery with every attempt (time, status code, latency, error)."""
    svc = services()
    svc.webhooks.get(webhook_id, current_tenant())
    items = [
        d.to_public(svc.deliveries.attempts(d.id)) for d in svc.deliveries.for_webhook(webhook_id)
    ]
    return jsonify({"items": items})


@bp.post("/<webhook_id>/deliveries/<delivery_id>/retry")
@declare(ok={202: (Delivery, "Queued again")}, errors=(404, 409, 503), operation_id="retryDelivery")
def retry_delivery(webhook_id: str, delivery_id: str) -> tuple[Response, int]:
    """Replay a delivery now, with the same webhook-id (receivers deduplicate on it)."""
    svc = services()
    sub = svc.webhooks.get(webhook_id, current_tenant())
    delivery = svc.deliveries.find(delivery_id)
    if delivery is None or delivery.webhook_id != webhook_id:
        raise NotFound(f"no delivery {delivery_id!r} for webhook {webhook_id!r}")
    if sub.status != ACTIVE:
        raise Conflict(
            f"webhook {webhook_id!r} is disabled ({sub.disabled_reason}); "
            f"enable it with POST /v1/webhooks/{webhook_id}/enable, then replay"
        )
    # Leased like a new delivery: sent now, and handed out again if that send is lost.
    svc.deliveries.schedule(delivery_id, time.time() + LEASE_SECONDS, status=PENDING)
    svc.deliveries.reset_attempt_budget(delivery_id)
    svc.events.send(delivery_id)
    current = svc.deliveries.find(delivery_id) or delivery
    return jsonify(current.to_public(svc.deliveries.attempts(delivery_id))), 202
