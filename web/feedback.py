"""`/v1/jobs/{id}/feedback` and `/v1/batches/{id}/feedback`: corrections of finished jobs.

A correction is idempotent (the same body again answers the same and adds nothing), the last one
stands and the history is kept (shared/feedback_store.py). A batch takes many at once, by `ref`
(or `job_id`), as JSON or as a CSV upload; each row is recorded or refused on its own."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from shared.batches import Batch
from shared.errors import BadRequest, Conflict, NotFound, SkuaiError, UnsupportedMediaType
from shared.feedback_store import FeedbackStore
from shared.jobs import Job
from shared.result_archive import ArchivedJobs, ResultArchive
from training.registry import Registry
from web.corrections import Catalogs, record
from web.openapi import declare
from web.schemas.feedback import (
    MAX_ROWS,
    BatchFeedback,
    BatchFeedbackJson,
    BatchFeedbackRow,
    Feedback,
    FeedbackBody,
)
from web.services import Services, services
from web.tenancy import current_tenant
from web.uploads import json_body
from web.validation import validated

bp = Blueprint("feedback", __name__, url_prefix="/v1")
TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n", ""}


@bp.post("/jobs/<job_id>/feedback")
@declare(
    json=FeedbackBody,
    ok={200: (Feedback, "The standing correction and the history (the same for a repeat)")},
    errors=(400, 404, 408, 409, 413, 422, 503),
    operation_id="correctJob",
)
def correct_job(job_id: str) -> Response:
    """Say what a succeeded job shows: a catalog `sku`, a catalog `model`, or `not_in_catalog`
    with a new `label`; 409 for a job not succeeded, 422 for a label the catalog lacks."""
    svc = services()
    body = validated(FeedbackBody, json_body(request))
    job = svc.jobs.get(job_id, current_tenant())
    record(svc, job, body, _catalogs(svc))
    return jsonify(_feedback(svc, job.tenant, job.id))


@bp.get("/jobs/<job_id>/feedback")
@declare(
    ok={200: (Feedback, "The standing correction (null if none) and the history")},
    errors=(404, 503),
    operation_id="getJobFeedback",
)
def job_feedback(job_id: str) -> Response:
    """A job's corrections."""
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    return jsonify(_feedback(svc, job.tenant, job.id))


@bp.post("/batches/<batch_id>/feedback")
@declare(
    json=BatchFeedbackJson,
    ok={200: (BatchFeedback, "Each row's outcome: recorded, unchanged (a repeat) or error")},
    errors=(400, 404, 408, 413, 415, 503),
    operation_id="correctBatch",
)
def correct_batch(batch_id: str) -> Response:
    """Many corrections of a batch's jobs by `ref` (or `job_id`): JSON `{"items": [...]}` or
    `text/csv` with a header row (`ref,sku,model,not_in_catalog,label,note`)."""
    svc = services()
    batch, archived = _batch(svc, batch_id, current_tenant())
    rows = _csv_rows(request.get_data()) if request.mimetype == "text/csv" else _json_rows()
    refs = {str(r.get("ref")) for r in rows if r.get("ref")}
    by_ref = _jobs_by_ref(svc, batch, refs, archived)
    catalogs = _catalogs(svc)
    items = [_row(svc, batch, i, row, by_ref, catalogs) for i, row in enumerate(rows)]
    outcomes = [item["outcome"] for item in items]
    return jsonify(
        {
            "recorded": outcomes.count("recorded"),
            "unchanged": outcomes.count("unchanged"),
            "failed": outcomes.count("error"),
            "items": items,
        }
    )


def _catalogs(svc: Services) -> Catalogs:
    return Catalogs(Registry(svc.settings.registry_dir))


def _feedback(svc: Services, tenant: str, job_id: str) -> dict[str, Any]:
    history = FeedbackStore(svc.conn).history(tenant, job_id)
    return {
        "job_id": job_id,
        "correction": history[-1].to_public() if history else None,
        "history": [c.to_public() for c in history],
    }


def _json_rows() -> list[dict[str, Any]]:
    if not request.is_json:
        raise UnsupportedMediaType('send application/json ({"items": [...]}) or text/csv')
    return validated(BatchFeedbackJson, json_body(request)).items


def _csv_rows(data: bytes) -> list[dict[str, Any]]:
    """The CSV's data rows as feedback rows: blank cells left out, not_in_catalog a boolean."""
    try:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        header = reader.fieldnames or []
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadRequest(f"the CSV cannot be read: {exc}") from None
    if "ref" not in header and "job_id" not in header:
        raise BadRequest("the CSV needs a header row with 'ref' (or 'job_id') and 'sku', ...")
    if not rows or len(rows) > MAX_ROWS:
        raise BadRequest(f"send 1 to {MAX_ROWS} rows after the header")
    return [_csv_row(row) for row in rows]


def _csv_row(row: dict[str | Any, Any]) -> dict[str, Any]:
    cells = {str(k): v.strip() for k, v in row.items() if isinstance(v, str) and k is not None}
    flag = cells.pop("not_in_catalog", "").lower()
    found: dict[str, Any] = {k: v for k, v in cells.items() if v}
    if flag in TRUE:
        found["not_in_catalog"] = True
    elif flag not in FALSE:
        found["not_in_catalog"] = flag  # refused by the row's validation, with its message
    return found


def _batch(svc: Services, batch_id: str, tenant: str) -> tuple[Batch, ArchivedJobs | None]:
    """The tenant's batch from Redis; else, once its records expired, from its result archive
    (with the archived jobs, to find refs by). NotFound for neither."""
    try:
        return svc.batches.get(batch_id, tenant), None
    except NotFound:
        if svc.jobs.blobs is None:
            raise
        archive = ResultArchive(svc.jobs.blobs)
        return archive.batch(batch_id, tenant), archive.jobs(batch_id)


def _jobs_by_ref(
    svc: Services, batch: Batch, refs: set[str], archived: ArchivedJobs | None
) -> dict[str, list[Job]]:
    """The batch's jobs with these refs (a page of the batch at a time); for an archived batch,
    the job records that still exist (a job's lasts SKUAI_RESULT_TTL from when it finished)."""
    found: dict[str, list[Job]] = {}
    if not refs:
        return found
    if archived is None:
        jobs: Iterable[Job | None] = svc.batches.iter_jobs(batch.id)
    else:
        lines = (archived.job(i) for i in range(len(archived.lines)))
        ids = [job["id"] for job in lines if job.get("ref") in refs]
        jobs = svc.jobs.find_many(ids) if ids else []
    for job in jobs:
        if job is not None and job.ref in refs:
            found.setdefault(job.ref, []).append(job)
    return found


def _row(
    svc: Services,
    batch: Batch,
    position: int,
    row: dict[str, Any],
    by_ref: dict[str, list[Job]],
    catalogs: Catalogs,
) -> dict[str, Any]:
    named = {"row": position, "ref": _text(row.get("ref")), "job_id": _text(row.get("job_id"))}
    try:
        body = validated(BatchFeedbackRow, row)
        job = _job_of(svc, batch, body, by_ref)
        recorded = record(svc, job, body, catalogs)
    except SkuaiError as exc:
        return {**named, "outcome": "error", "error": exc.to_dict()}
    outcome = "recorded" if recorded.created else "unchanged"
    return {
        **named,
        "job_id": job.id,
        "outcome": outcome,
        "correction": recorded.correction.to_public(),
    }


def _job_of(
    svc: Services, batch: Batch, body: BatchFeedbackRow, by_ref: dict[str, list[Job]]
) -> Job:
    if body.job_id is not None:
        job = svc.jobs.find(body.job_id)
        if job is None or job.batch_id != batch.id:
            raise NotFound(f"no job {body.job_id!r} in batch {batch.id}")
        return job
    if body.ref is None:
        raise BadRequest("send 'ref' (or 'job_id')")
    matches = by_ref.get(body.ref, [])
    if not matches:
        raise NotFound(f"no image with ref {body.ref!r} in batch {batch.id}")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} images have ref {body.ref!r}: name the job by 'job_id'")
    return matches[0]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
