"""`/v1/review`: the tenant's review opt-in and the images it kept (shared/review_store.py).

Nothing is kept until `PUT /v1/review/settings` asks for it. Kept images are listed newest first
with filters, read one by one, and deleted on request (one, or all of the tenant's). Images held
pending a correction (a tenant keeping `corrected`) are not listed or shown: only counted in
the settings' `pending_count` and deleted with the others."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from shared.errors import NotFound, ServiceUnavailable
from shared.feedback_store import FeedbackStore, since_epoch
from shared.image_formats import MEDIA_TYPES
from shared.images import sniff
from shared.review_store import PENDING, ReviewItem, ReviewSettings, ReviewStore
from web.openapi import declare
from web.schemas.feedback import (
    ReviewDeleted,
    ReviewList,
    ReviewQuery,
    ReviewSettingsBody,
)
from web.schemas.feedback import ReviewItem as ReviewItemShape
from web.schemas.feedback import ReviewSettings as ReviewSettingsShape
from web.services import Services, services
from web.tenancy import current_tenant
from web.uploads import json_body
from web.validation import validated, validated_query

bp = Blueprint("review", __name__, url_prefix="/v1/review")
SCAN = 2000  # kept items read per request at most, however selective the filters


def _store(svc: Services) -> ReviewStore:
    if svc.jobs.blobs is None:
        raise ServiceUnavailable("no blob store is configured for review images")
    return ReviewStore(svc.conn, svc.jobs.blobs)


@bp.get("/settings")
@declare(
    ok={200: (ReviewSettingsShape, "The opt-in (keep: [] when off)")},
    errors=(503,),
    operation_id="getReviewSettings",
)
def get_settings() -> Response:
    """The tenant's review opt-in and what is kept now."""
    store = _store(services())
    return jsonify(_settings(store, current_tenant(), store.settings(current_tenant())))


@bp.put("/settings")
@declare(
    json=ReviewSettingsBody,
    ok={200: (ReviewSettingsShape, "The opt-in now")},
    errors=(400, 408, 413, 503),
    operation_id="putReviewSettings",
)
def put_settings() -> Response:
    """Opt in (or out, with `keep: []`); a smaller cap or retention applies at once."""
    body = validated(ReviewSettingsBody, json_body(request))
    store = _store(services())
    wanted = ReviewSettings(**{**body.model_dump(), "keep": tuple(dict.fromkeys(body.keep))})
    return jsonify(_settings(store, current_tenant(), store.configure(current_tenant(), wanted)))


@bp.get("")
@declare(
    query=ReviewQuery,
    ok={200: (ReviewList, "Kept images, newest first")},
    errors=(400, 503),
    operation_id="listReview",
)
def list_review() -> Response:
    """Kept images, newest first, filtered by reason, decision, batch and time kept."""
    svc, tenant = services(), current_tenant()
    query = validated_query(ReviewQuery)
    since = since_epoch(query.since) if query.since else None
    store = _store(svc)
    settings = store.settings(tenant)
    store.enforce(tenant, settings)
    items: list[ReviewItem] = []
    position, scanned = query.cursor, 0
    while len(items) < query.limit and scanned < SCAN:
        page = store.page(tenant, position, min(200, SCAN - scanned))
        if not page:
            return jsonify({"items": _shown(svc, settings, items), "next_cursor": None})
        for item in page:
            position += 1
            scanned += 1
            if since is not None and item.kept_epoch < since:
                return jsonify({"items": _shown(svc, settings, items), "next_cursor": None})
            if _wanted(item, query):
                items.append(item)
                if len(items) == query.limit:
                    break
    return jsonify({"items": _shown(svc, settings, items), "next_cursor": position})


@bp.get("/<job_id>")
@declare(
    ok={200: (ReviewItemShape, "The kept image's record")},
    errors=(404, 503),
    operation_id="getReview",
)
def get_review(job_id: str) -> Response:
    """One kept image's record."""
    svc, tenant = services(), current_tenant()
    store = _store(svc)
    return jsonify(_shown(svc, store.settings(tenant), [_found(store, tenant, job_id)])[0])


@bp.get("/<job_id>/image")
@declare(
    ok={200: (None, "The image's bytes as uploaded")},
    errors=(404, 503),
    operation_id="getReviewImage",
)
def review_image(job_id: str) -> Response:
    """The kept image, as uploaded."""
    svc, tenant = services(), current_tenant()
    store = _store(svc)
    _found(store, tenant, job_id)
    data = store.image(tenant, job_id)
    if data is None:
        raise NotFound(f"the image of {job_id!r} is gone")
    kind = sniff(data, max_pixels=svc.settings.max_image_pixels)
    return Response(data, mimetype=MEDIA_TYPES.get(kind, "application/octet-stream"))


@bp.delete("/<job_id>")
@declare(ok={204: (None, "Deleted")}, errors=(404, 503), operation_id="deleteReview")
def delete_review(job_id: str) -> tuple[str, int]:
    """Delete one kept image now."""
    store = _store(services())
    if not store.delete(current_tenant(), [job_id]):
        raise NotFound(f"no kept image for job {job_id!r}")
    return "", 204


@bp.delete("")
@declare(
    ok={200: (ReviewDeleted, "How many were deleted")},
    errors=(503,),
    operation_id="deleteAllReview",
)
def delete_all_review() -> Response:
    """Delete every image the tenant kept (the opt-in stays as it is)."""
    return jsonify({"deleted": _store(services()).delete_all(current_tenant())})


def _found(store: ReviewStore, tenant: str, job_id: str) -> ReviewItem:
    item = store.find(tenant, job_id)
    if item is None or PENDING in item.reasons:  # held in case a correction comes: not kept
        raise NotFound(f"no kept image for job {job_id!r}")
    return item


def _wanted(item: ReviewItem, query: ReviewQuery) -> bool:
    return (
        (query.reason is None or query.reason in item.reasons)
        and (query.decision is None or query.decision == item.decision)
        and (query.batch_id is None or query.batch_id == item.batch_id)
    )


def _shown(
    svc: Services, settings: ReviewSettings, items: list[ReviewItem]
) -> list[dict[str, Any]]:
    if not items:
        return []
    tenant = items[0].tenant
    corrections = FeedbackStore(svc.conn).latest_many(tenant, [i.job_id for i in items])
    return [
        {
            "job_id": item.job_id,
            "batch_id": item.batch_id,
            "ref": item.ref,
            "reasons": list(item.reasons),
            "decision": item.decision,
            "model_version": item.model_version,
            "result": item.result,
            "correction": correction.to_public() if correction else None,
            "kept_at": item.kept_at,
            "expires_at": _iso(item.kept_epoch + settings.retention_seconds),
            "size_bytes": item.size,
            "image_url": f"/v1/review/{item.job_id}/image",
        }
        for item, correction in zip(items, corrections, strict=True)
    ]


def _settings(store: ReviewStore, tenant: str, settings: ReviewSettings) -> dict[str, Any]:
    kept = {
        "kept_bytes": store.kept_bytes(tenant),
        "kept_count": store.kept_count(tenant),
        "pending_count": store.pending_count(tenant),
    }
    return {**settings.to_public(), **kept}


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
