"""The console's JSON endpoints for its scripts: each calls the API's own view or store
function as the session's tenant, so the rules (limits, idempotency, tenancy) are the API's."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flask import Response, jsonify, make_response, send_file

from shared.errors import NotFound
from training.registry import Registry
from web import batches, feedback, review
from web.console import bp, recent
from web.console.api_calls import call_with_accept
from web.console.results import GridQuery, grid_page
from web.services import services
from web.tenancy import current_tenant
from web.validation import validated_query

CSV, NDJSON = "text/csv", "application/x-ndjson"  # what the API's export answers by Accept
EXPORTS = {"csv": CSV, "ndjson": NDJSON}
CONFUSION_IMAGE = "confusion.png"  # training/report.py writes it into each version's folder


@bp.post("/api/batches")
def create_batch() -> Response:
    """Upload files and archives: `POST /v1/batches` itself; remembered for the upload page."""
    response = make_response(batches.create_batch())
    if response.status_code == 202 and "Idempotent-Replayed" not in response.headers:
        recent.remember(current_tenant(), response.get_json())
    return response


@bp.get("/api/batches/<batch_id>")
def batch_status(batch_id: str) -> Response:
    """Status, counts per status and per decision: `GET /v1/batches/{id}`."""
    return batches.get_batch(batch_id)


@bp.post("/api/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str) -> Response:
    """`POST /v1/batches/{id}/cancel`."""
    return batches.cancel_batch(batch_id)


@bp.get("/api/batches/<batch_id>/grid")
def batch_grid(batch_id: str) -> Response:
    """A page of results filtered by decision and confidence, sorted."""
    query = validated_query(GridQuery)
    exported = _export(batch_id, NDJSON)
    return jsonify(grid_page(records(exported.response), query).model_dump())


@bp.get("/api/batches/<batch_id>/results.<kind>")
def export(batch_id: str, kind: str) -> Response:
    """The whole batch as CSV or NDJSON (`GET /v1/batches/{id}/results` itself), a download."""
    if kind not in EXPORTS:
        raise NotFound(f"no export as {kind!r}: csv or ndjson")
    response = _export(batch_id, EXPORTS[kind])
    response.headers["Content-Disposition"] = f'attachment; filename="{batch_id}.{kind}"'
    return response


def records(chunks: Iterable[str | bytes]) -> Iterator[dict[str, Any]]:
    """The objects of an NDJSON stream, whatever its chunks (a line each, or the whole export)."""
    pending = ""
    for chunk in chunks:
        pending += chunk.decode() if isinstance(chunk, bytes) else chunk
        *lines, pending = pending.split("\n")
        yield from (json.loads(line) for line in lines if line.strip())
    if pending.strip():
        yield json.loads(pending)


def _export(batch_id: str, mimetype: str) -> Response:
    path = f"/v1/batches/{batch_id}/results"
    return call_with_accept(batches.batch_results, path, mimetype, batch_id=batch_id)


@bp.get("/api/jobs/<job_id>/image")
def job_image(job_id: str) -> Response:
    """The job's image where the review store kept it: `GET /v1/review/{id}/image` (else 404,
    and the grid shows a placeholder)."""
    return review.review_image(job_id)


@bp.post("/api/jobs/<job_id>/feedback")
def job_feedback(job_id: str) -> Response:
    """Correct a prediction: `POST /v1/jobs/{id}/feedback` with the same JSON body."""
    return feedback.correct_job(job_id)


@bp.get("/models/<version>/confusion.png")
def confusion_image(version: str) -> Response:
    """A version's confusion matrix, served only for a registered version's own folder."""
    registry = Registry(services().settings.registry_dir)
    # The name is matched against the registry's listing, never joined into a path as given.
    known = {info.name: info.path for info in registry.versions()}
    folder = known.get(version)
    image = Path(folder, CONFUSION_IMAGE) if folder is not None else None
    if image is None or not image.is_file():
        raise NotFound(f"no confusion matrix for version {version!r}")
    return send_file(image, mimetype="image/png", max_age=3600)
