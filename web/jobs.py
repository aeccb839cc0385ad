"""`/v1/jobs`: submit one image, read a job (with long-polling)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from shared import defaults
from shared.errors import BadRequest, UnsupportedMediaType
from shared.images import sniff
from shared.jobs import Job, new_job_id
from shared.long_polls import LongPolls
from shared.queues import enqueue_singles_task
from shared.url_guard import check_url
from web.services import services
from web.tenancy import current_key_digest, current_tenant
from web.uploads import (
    FORM_OVERHEAD,
    check_request_size,
    decode_base64,
    json_body,
    parse_metadata,
    read_file,
)

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.post("")
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Accept one image (multipart `image` or JSON `image_base64`) and queue it."""
    svc = services()
    limit = svc.settings.max_image_bytes
    # One image, as a file or as base64 in JSON; a chunked body is cut off at this while read.
    request.max_content_length = allowed = (limit * 4) // 3 + FORM_OVERHEAD
    check_request_size(request, allowed)
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise BadRequest("send the image in the multipart field 'image'")
        data, ref = read_file(upload, limit), upload.filename or None
        metadata = parse_metadata(request.form.get("metadata"))
        callback = request.form.get("callback_url") or None
    elif request.is_json:
        body = json_body(request)
        if "image_base64" not in body:
            raise BadRequest("send 'image_base64' (or a multipart field 'image')")
        data, ref = decode_base64(body["image_base64"], limit), body.get("ref")
        metadata = parse_metadata(body.get("metadata"))
        callback = body.get("callback_url") or None
    else:
        raise UnsupportedMediaType("send multipart/form-data or application/json")
    if callback is not None:
        check_url(callback, allow_private=svc.settings.allow_private_urls, field="callback_url")
    sniff(data, max_pixels=svc.settings.max_image_pixels)
    job = Job(
        id=new_job_id(),
        tenant=current_tenant(),
        ref=_clean_ref(ref),
        metadata=metadata,
        callback_url=callback,
    )
    # Exact under concurrency: the place is reserved, then held by the stored job instead.
    svc.admission.reserve(1, job.id)
    try:
        svc.jobs.create(job, data)
        svc.singles.push(job.id)
        enqueue_singles_task(svc.celery)
    except Exception:
        svc.jobs.delete(job.id)  # not accepted after all: leave nothing behind
        raise
    finally:
        svc.admission.release(job.id)
    log.info("job accepted", extra={"job_id": job.id, "tenant": job.tenant})
    return jsonify(job.to_public()), 202, {"Location": f"/v1/jobs/{job.id}"}


@bp.get("/<job_id>")
def get_job(job_id: str) -> Response:
    """The job; `?wait=S` holds the request up to S seconds until the job is final."""
    svc, wait = services(), _wait_seconds(request.args.get("wait"))
    job = svc.jobs.get(job_id, current_tenant())
    if job.is_final or wait <= 0:
        return jsonify(job.to_public())
    # A wait costs the API little (a greenlet), but each holds a Redis connection: capped per key.
    long_polls = LongPolls(svc.conn, per_key=svc.settings.max_waits_per_key)
    with long_polls.slot(current_key_digest(), wait):
        job = svc.jobs.wait(job_id, current_tenant(), wait)
    return jsonify(job.to_public())


@bp.delete("/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel a job that has not finished (409 once it has)."""
    return jsonify(services().jobs.cancel(job_id, current_tenant()).to_public())


def _wait_seconds(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise BadRequest("wait must be a number of seconds") from None
    if not 0 <= wait <= defaults.MAX_WAIT_SECONDS:
        raise BadRequest(f"wait must be between 0 and {defaults.MAX_WAIT_SECONDS} seconds")
    return wait


def _clean_ref(ref: object) -> str | None:
    if ref is None:
        return None
    if not isinstance(ref, str) or len(ref) > 1024:
        raise BadRequest("ref must be a string of at most 1024 characters")
    return ref
