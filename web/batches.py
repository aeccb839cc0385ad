"""`/v1/batches`: many images at once (files, archives or URLs), status, results and cancel."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request

from shared import defaults
from shared.batches import Batch, new_batch_id
from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from shared.url_guard import check_url
from web.archives import ArchiveLimits, UnpackClock, iter_archive
from web.batch_intake import BatchIntake
from web.exports import CSV, NDJSON, csv_lines, ndjson_lines
from web.idempotency import idempotency_key, request_fingerprint
from web.services import Services, services
from web.tenancy import current_tenant
from web.uploads import json_body, parse_metadata

log = logging.getLogger(__name__)
bp = Blueprint("batches", __name__, url_prefix="/v1/batches")
FORM_FIELDS = 16  # non-file parts a batch form may carry besides its images
MAX_PAGE = 1000


@bp.post("")
def create_batch() -> tuple[Response, int, dict[str, str]]:
    """Accept many images; `Idempotency-Key` makes a retry return the same batch (and the key
    reused with another request is 422)."""
    svc = services()
    key = idempotency_key(request)  # before the body is read: a bad key costs nothing
    # Files and archives may be large; a JSON list of URLs is not (a chunked body is cut off too).
    uploads = request.mimetype == "multipart/form-data"
    request.max_content_length = (
        svc.settings.max_request_bytes if uploads else svc.settings.max_json_bytes
    )
    request.max_form_parts = svc.settings.max_batch_images + FORM_FIELDS
    form = _read_form(svc)
    tenant = current_tenant()
    batch = Batch(
        id=new_batch_id(),
        tenant=tenant,
        metadata=form["metadata"],
        callback_url=form["callback_url"],
    )
    fingerprint = request_fingerprint(request, form["json"]) if key else ""
    if key:
        existing = svc.batches.claim_idempotency_key(tenant, key, batch.id, fingerprint)
        if existing is not None:
            replay = svc.batches.get(existing, tenant)
            return (
                jsonify(replay.to_public()),
                202,
                {"Location": f"/v1/batches/{replay.id}", "Idempotent-Replayed": "true"},
            )
    try:
        _intake(svc, batch, form)
    except BaseException:
        _abandon(svc, batch, key)
        raise
    if key:
        svc.batches.confirm_idempotency_key(tenant, key, batch.id, fingerprint)
    created = svc.batches.get(batch.id, tenant)
    log.info(
        "batch accepted: %d images", created.total, extra={"batch_id": batch.id, "tenant": tenant}
    )
    return jsonify(created.to_public()), 202, {"Location": f"/v1/batches/{batch.id}"}


def _abandon(svc: Services, batch: Batch, key: str | None) -> None:
    """A refused upload leaves nothing to process and frees its Idempotency-Key. Best effort:
    the request's own error (which may be Redis being down) is what the client must see."""
    try:
        svc.batches.abandon(batch.id)  # the sweeper does it if Redis cannot be reached now
        if key:
            svc.batches.release_idempotency_key(batch.tenant, key, batch.id)
    except Exception as exc:  # logged, then the original error goes on
        log.warning("could not clean up a refused batch: %s", exc, extra={"batch_id": batch.id})


def _read_form(svc: Services) -> dict[str, Any]:
    if request.mimetype == "multipart/form-data":
        raw: Any = request.form
    elif request.is_json:
        raw = json_body(request)
    else:
        raise UnsupportedMediaType("send multipart/form-data or application/json")
    callback = raw.get("callback_url") or None
    if callback is not None:
        check_url(callback, allow_private=svc.settings.allow_private_urls, field="callback_url")
    return {
        "metadata": parse_metadata(raw.get("metadata")),
        "callback_url": callback,
        "json": raw if request.is_json else None,
    }


def _intake(svc: Services, batch: Batch, form: dict[str, Any]) -> None:
    svc.batches.open(batch)
    intake = BatchIntake(svc, svc.batches, batch)
    try:
        if form["json"] is not None:
            _add_urls(intake, form["json"].get("images"))
        else:
            _add_files(svc, intake)
    except BaseException:
        intake.abandon()
        raise
    if intake.count == 0:
        raise BadRequest("the batch has no images: send 'images' files, an 'archive', or URLs")
    intake.close()


def _add_files(svc: Services, intake: BatchIntake) -> None:
    limit = svc.settings.max_image_bytes
    intake.expect(len(request.files.getlist("images")))
    for upload in request.files.getlist("images"):
        data = upload.stream.read(limit + 1)
        ref = upload.filename or f"image-{intake.count + 1}"
        if len(data) > limit:
            intake.add_refused(ref, PayloadTooLarge(f"the image is over {limit} bytes").to_dict())
        else:
            intake.add_bytes(ref, data)
    limits = ArchiveLimits(
        max_entries=svc.settings.max_batch_images,
        max_entry_bytes=limit,
        max_total_bytes=svc.settings.max_archive_bytes,
    )
    clock = UnpackClock(svc.settings.max_archive_seconds)  # one for all the request's archives
    for archive in request.files.getlist("archive"):
        for entry in iter_archive(archive.stream, limits, clock):
            intake.add_entry(entry)


def _add_urls(intake: BatchIntake, images: Any) -> None:
    if not isinstance(images, list) or not images:
        raise BadRequest('\'images\' must be a non-empty list of {"url", "ref"} objects')
    intake.expect(len(images))
    for i, item in enumerate(images):
        if not isinstance(item, dict) or "url" not in item:
            raise BadRequest(f"images[{i}] must be an object with a 'url'")
        ref = item.get("ref", item["url"])
        if not isinstance(ref, str):
            raise BadRequest(f"images[{i}].ref must be a string")
        intake.add_url(ref, item["url"])


@bp.get("/<batch_id>")
def get_batch(batch_id: str) -> Response:
    """Status and exact counts."""
    return jsonify(services().batches.get(batch_id, current_tenant()).to_public())


@bp.get("/<batch_id>/results")
def batch_results(batch_id: str) -> Response:
    """A page of jobs (`cursor`, `limit`), or the whole batch as CSV or NDJSON by `Accept`."""
    store = services().batches
    batch = store.get(batch_id, current_tenant())
    wanted = request.accept_mimetypes.best_match(["application/json", CSV, NDJSON])
    if wanted == CSV:
        return Response(
            csv_lines(store.iter_jobs(batch_id)),
            mimetype=CSV,
            headers={"Content-Disposition": f'attachment; filename="{batch_id}.csv"'},
        )
    if wanted == NDJSON:
        return Response(ndjson_lines(store.iter_jobs(batch_id)), mimetype=NDJSON)
    # Bounded by the batch: a cursor past the end means nothing, and Redis refuses indexes
    # beyond 64 bits.
    cursor = _int_arg("cursor", 0, 0, batch.total)
    limit = _int_arg("limit", defaults.RESULTS_PAGE, 1, MAX_PAGE)
    jobs, following = store.page(batch_id, cursor, limit)
    return jsonify(
        {
            "items": [job.to_public() for job in jobs],
            "next_cursor": str(following) if following is not None else None,
        }
    )


@bp.post("/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Response:
    """Cancel what has not run; finished results stay."""
    batch, _ = services().batches.cancel(batch_id, current_tenant())
    return jsonify(batch.to_public())


def _int_arg(name: str, default: int, low: int, high: int | None) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{name} must be between {low} and {high or 'the end'}")
    return value
