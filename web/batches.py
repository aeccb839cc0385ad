"""`/v1/batches`: many images at once (files, archives or URLs), status, results and cancel."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from shared.batch_store import SEALED, IdempotencyKey
from shared.batches import Batch as StoredBatch
from shared.batches import new_batch_id
from shared.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType
from shared.exports import CSV, NDJSON, csv_lines, ndjson_lines
from shared.result_archive import ResultArchive
from shared.url_guard import check_url
from web.archives import ArchiveLimits, UnpackClock, iter_archive
from web.batch_intake import BatchIntake
from web.idempotency import idempotency_key, request_fingerprint
from web.openapi import declare
from web.schemas.batches import (
    Batch,
    BatchForm,
    BatchJson,
    ExportQuery,
    IdempotencyHeader,
    ImageUrl,
    ResultsPage,
    ResultsQuery,
)
from web.services import Services, services
from web.tenancy import current_tenant
from web.uploads import json_body
from web.validation import validated, validated_query

log = logging.getLogger(__name__)
bp = Blueprint("batches", __name__, url_prefix="/v1/batches")
FORM_FIELDS = 16  # non-file parts a batch form may carry besides its images


@bp.post("")
@declare(
    json=BatchJson,
    form=BatchForm,
    headers=IdempotencyHeader,
    ok={202: (Batch, "Accepted; each image is a job of the batch")},
    errors=(400, 408, 409, 413, 415, 422, 503, 507),
    operation_id="createBatch",
)
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
    form, raw_json = _read_form(svc)
    tenant = current_tenant()
    batch = StoredBatch(
        id=new_batch_id(),
        tenant=tenant,
        metadata=form.metadata,
        callback_url=form.callback_url,
    )
    fingerprint = request_fingerprint(request, raw_json) if key else ""
    binding = IdempotencyKey(tenant, key, fingerprint) if key else None
    if key:
        existing = svc.batches.claim_idempotency_key(tenant, key, batch.id, fingerprint)
        if existing is not None:
            replay = _batch(svc, existing, tenant)
            return (
                jsonify(replay.to_public()),
                202,
                {"Location": f"/v1/batches/{replay.id}", "Idempotent-Replayed": "true"},
            )
    try:
        _intake(svc, batch, form, binding)
    except BaseException as exc:
        # Sealed after all (only the reply got lost): accepted, its key bound, so never an error.
        if not (_abandon(svc, batch) and isinstance(exc, Exception)):
            raise
        log.warning(
            "sealed although sealing failed (%s): accepted", exc, extra={"batch_id": batch.id}
        )
    created = svc.batches.get(batch.id, tenant)
    log.info(
        "batch accepted: %d images", created.total, extra={"batch_id": batch.id, "tenant": tenant}
    )
    return jsonify(created.to_public()), 202, {"Location": f"/v1/batches/{batch.id}"}


def _abandon(svc: Services, batch: StoredBatch) -> bool:
    """A refused upload leaves nothing to process and frees its Idempotency-Key (in one step:
    store_scripts.ABANDON); True when the batch turns out sealed, i.e. accepted. Best effort:
    the request's own error (which may be Redis being down) is what the client must see, and
    the sweeper rolls the upload back if Redis cannot be reached now."""
    try:
        return svc.batches.abandon(batch.id) == SEALED
    except Exception as exc:  # logged, then the original error goes on
        log.warning("could not clean up a refused batch: %s", exc, extra={"batch_id": batch.id})
        return False


def _read_form(svc: Services) -> tuple[BatchJson | BatchForm, dict[str, Any] | None]:
    """The validated body, and the JSON object it came as (None for a form)."""
    form: BatchJson | BatchForm
    raw_json = None
    if request.mimetype == "multipart/form-data":
        files = {name: request.files.getlist(name) for name in ("images", "archive")}
        form = validated(BatchForm, {**request.form.to_dict(), **files})
    elif request.is_json:
        raw_json = json_body(request)
        form = validated(BatchJson, raw_json)
    else:
        raise UnsupportedMediaType("send multipart/form-data or application/json")
    if form.callback_url is not None:
        check_url(
            form.callback_url, allow_private=svc.settings.allow_private_urls, field="callback_url"
        )
    return form, raw_json


def _intake(
    svc: Services,
    batch: StoredBatch,
    form: BatchJson | BatchForm,
    idempotency: IdempotencyKey | None,
) -> None:
    svc.batches.open(batch)
    intake = BatchIntake(svc, svc.batches, batch)
    try:
        if isinstance(form, BatchJson):
            _add_urls(intake, form.images)
        else:
            _add_files(svc, intake, form)
    except BaseException:
        intake.abandon()
        raise
    if intake.count == 0:
        raise BadRequest("the batch has no images: send 'images' files, an 'archive', or URLs")
    intake.close(idempotency)


def _add_files(svc: Services, intake: BatchIntake, form: BatchForm) -> None:
    limit = svc.settings.max_image_bytes
    intake.expect(len(form.images))
    for upload in form.images:
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
    for archive in form.archive:
        for entry in iter_archive(archive.stream, limits, clock):
            intake.add_entry(entry)


def _add_urls(intake: BatchIntake, images: list[ImageUrl]) -> None:
    intake.expect(len(images))
    for image in images:
        intake.add_url(image.url if image.ref is None else image.ref, image.url)


@bp.get("/<batch_id>")
@declare(ok={200: (Batch, "The batch")}, errors=(404, 503), operation_id="getBatch")
def get_batch(batch_id: str) -> Response:
    """Status and exact counts (from the result archive once Redis no longer has the batch)."""
    return jsonify(_batch(services(), batch_id, current_tenant()).to_public())


def _batch(svc: Services, batch_id: str, tenant: str) -> StoredBatch:
    """The tenant's batch from Redis, else from its result archive; NotFound for neither."""
    try:
        return svc.batches.get(batch_id, tenant)
    except NotFound:
        return _archive(svc, batch_id).batch(batch_id, tenant)


@bp.get("/<batch_id>/results")
@declare(
    query=ResultsQuery,
    ok={200: (ResultsPage, "Results in upload order")},
    errors=(400, 404, 503),
    operation_id="getBatchResults",
)
def batch_results(batch_id: str) -> Response:
    """A page of jobs (`cursor`, `limit`), or the whole batch as CSV or NDJSON by `Accept`;
    `decision` keeps only succeeded jobs with one of the decisions given. Once the batch's Redis
    records are gone, the same answers come from its result archive."""
    svc, tenant = services(), current_tenant()
    store, archive = svc.batches, None
    try:
        batch = store.get(batch_id, tenant)
    except NotFound:
        archive = _archive(svc, batch_id)
        batch = archive.batch(batch_id, tenant)
    wanted = request.accept_mimetypes.best_match(["application/json", CSV, NDJSON])
    if wanted in (CSV, NDJSON):
        # Exports take no paging parameters: only the filter is read (and checked).
        decisions = validated_query(ExportQuery).decision
        if archive is None:
            exported = (job.to_public() for job in store.iter_jobs(batch_id, decisions))
            return _export(_lines(exported, wanted), wanted, batch_id)
        if decisions is None:  # the bytes stored when the batch completed
            return _export([archive.export(batch_id, wanted).decode()], wanted, batch_id)
        return _export(_lines(archive.jobs(batch_id).filtered(decisions), wanted), wanted, batch_id)
    # Bounded by the batch: a cursor past the end means nothing, and Redis refuses indexes
    # beyond 64 bits.
    page = validated_query(ResultsQuery)
    if page.cursor > batch.total:
        raise BadRequest(f"cursor must be between 0 and {batch.total}")
    if archive is not None:
        items, following = archive.jobs(batch_id).page(page.cursor, page.limit, page.decision)
    else:
        jobs, following = store.page(batch_id, page.cursor, page.limit, page.decision)
        items = [job.to_public() for job in jobs]
    return jsonify(
        {"items": items, "next_cursor": str(following) if following is not None else None}
    )


def _archive(svc: Services, batch_id: str) -> ResultArchive:
    """The result archive; NotFound where the service keeps none (a store without blobs)."""
    if svc.jobs.blobs is None:
        raise NotFound(f"no batch with id {batch_id!r}")
    return ResultArchive(svc.jobs.blobs)


def _lines(jobs: Iterable[dict[str, Any]], wanted: str) -> Iterator[str]:
    """The jobs (public shapes) as NDJSON or CSV lines."""
    return ndjson_lines(jobs) if wanted == NDJSON else csv_lines(jobs)


def _export(lines: Iterable[str], wanted: str, batch_id: str) -> Response:
    """An export's lines, streamed (CSV as a download)."""
    if wanted == NDJSON:
        return Response(lines, mimetype=NDJSON)
    return Response(
        lines,
        mimetype=CSV,
        headers={"Content-Disposition": f'attachment; filename="{batch_id}.csv"'},
    )


@bp.post("/<batch_id>/cancel")
@declare(ok={200: (Batch, "The batch")}, errors=(404, 503), operation_id="cancelBatch")
def cancel_batch(batch_id: str) -> Response:
    """Cancel what has not run; finished results stay."""
    batch, _ = services().batches.cancel(batch_id, current_tenant())
    return jsonify(batch.to_public())
