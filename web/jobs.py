"""`/v1/jobs`: submit one image, read a job (with long-polling)."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, jsonify, request

from shared.errors import UnsupportedMediaType
from shared.images import sniff
from shared.job_store import JobStore
from shared.jobs import Job as StoredJob
from shared.jobs import new_job_id
from shared.long_polls import LongPolls
from shared.queues import enqueue_singles_task
from shared.url_guard import check_url
from web.openapi import declare
from web.schemas.jobs import Job, JobForm, JobJson, JobWait
from web.services import services
from web.tenancy import current_key_digest, current_tenant
from web.uploads import FORM_OVERHEAD, check_request_size, decode_base64, json_body, read_file
from web.validation import validated, validated_query

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


@bp.post("")
@declare(
    json=JobJson,
    form=JobForm,
    ok={202: (Job, "Queued; `Location` points at the job")},
    errors=(400, 408, 413, 415, 422, 503, 507),
    operation_id="createJob",
)
def create_job() -> tuple[Response, int, dict[str, str]]:
    """Accept one image (multipart `image` or JSON `image_base64`) and queue it."""
    svc = services()
    limit = svc.settings.max_image_bytes
    # One image, as a file or as base64 in JSON; a chunked body is cut off at this while read.
    request.max_content_length = allowed = (limit * 4) // 3 + FORM_OVERHEAD
    check_request_size(request, allowed)
    if request.mimetype == "multipart/form-data":
        form = validated(JobForm, {**request.form.to_dict(), "image": request.files.get("image")})
        data, ref = read_file(form.image, limit), form.image.filename or None
        metadata, callback = form.metadata, form.callback_url
    elif request.is_json:
        body = validated(JobJson, json_body(request))
        data, ref = decode_base64(body.image_base64, limit), body.ref
        metadata, callback = body.metadata, body.callback_url
    else:
        raise UnsupportedMediaType("send multipart/form-data or application/json")
    if callback is not None:
        check_url(callback, allow_private=svc.settings.allow_private_urls, field="callback_url")
    sniff(data, max_pixels=svc.settings.max_image_pixels)
    job = StoredJob(
        id=new_job_id(),
        tenant=current_tenant(),
        ref=ref,
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
        _discard(svc.jobs, job.id)
        raise
    finally:
        svc.admission.release(job.id)
    log.info("job accepted", extra={"job_id": job.id, "tenant": job.tenant})
    return jsonify(job.to_public()), 202, {"Location": f"/v1/jobs/{job.id}"}


def _discard(jobs: JobStore, job_id: str) -> None:
    """Not accepted after all: leave nothing behind, its place under SKUAI_MAX_QUEUED given
    back. Best effort: the request's own error is what the client must see."""
    try:
        jobs.delete(job_id)
    except redis.RedisError as exc:
        log.warning("could not remove a job never queued: %s", exc, extra={"job_id": job_id})


@bp.get("/<job_id>")
@declare(
    query=JobWait,
    ok={200: (Job, "The job")},
    errors=(400, 404, 503),
    operation_id="getJob",
)
def get_job(job_id: str) -> Response:
    """The job; `?wait=S` holds the request up to S seconds until the job is final."""
    svc, wait = services(), validated_query(JobWait).wait
    job = svc.jobs.get(job_id, current_tenant())
    if job.is_final or wait <= 0:
        return jsonify(job.to_public())
    # A wait costs the API little (a greenlet), but each holds a Redis connection: capped per key.
    long_polls = LongPolls(svc.conn, per_key=svc.settings.max_waits_per_key)
    with long_polls.slot(current_key_digest(), wait):
        job = svc.jobs.wait(job_id, current_tenant(), wait)
    return jsonify(job.to_public())


@bp.delete("/<job_id>")
@declare(ok={200: (Job, "The canceled job")}, errors=(404, 409, 503), operation_id="cancelJob")
def cancel_job(job_id: str) -> Response:
    """Cancel a job that has not finished (409 once it has)."""
    return jsonify(services().jobs.cancel(job_id, current_tenant()).to_public())
