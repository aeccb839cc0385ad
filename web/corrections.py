"""Turning a feedback body into a stored correction: the job must have succeeded, labels are
checked against the catalog of the version that made the prediction, and a new correction is
counted, announced (`job.corrected`) and, for a tenant keeping corrected jobs, kept for review."""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import Conflict, InvalidLabel, ModelNotFound, SkuaiError
from shared.feedback_store import MODEL, NOT_IN_CATALOG, SKU, Correction, FeedbackStore, Recorded
from shared.jobs import SUCCEEDED, Job
from shared.metrics import ClusterMetrics
from shared.review_store import CORRECTED, PENDING, ReviewStore
from training.labels import Labels
from training.registry import Registry
from web.schemas.feedback import FeedbackBody
from web.services import Services

log = logging.getLogger(__name__)
NEW_LABEL_HINT = 'for a SKU the catalog lacks send {"not_in_catalog": true, "label": ...}'


class Catalogs:
    """The labels of each model version, read once per request."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.read: dict[str, Labels] = {}

    def of(self, version: str) -> Labels:
        """The version's labels, or a 409 when the API cannot read them."""
        if version not in self.read:
            try:
                self.read[version] = self.registry.labels(version)
            except ModelNotFound as exc:
                raise Conflict(
                    f"the catalog of version {version!r}, which made this prediction, cannot be "
                    f"read: {exc.message}"
                ) from None
        return self.read[version]


def check_correctable(job: Job) -> str:
    """The job's model version; a 409 unless the job succeeded (only then is there an answer)."""
    if not job.is_final:
        raise Conflict(f"job {job.id} is still {job.status}: correct it once it has succeeded")
    if job.status != SUCCEEDED or job.result is None or job.model_version is None:
        raise Conflict(f"job {job.id} {job.status}: only a succeeded job has an answer to correct")
    return job.model_version


def correction_of(job: Job, body: FeedbackBody, catalogs: Catalogs) -> Correction:
    """The correction `body` says, checked against the job's catalog."""
    version = check_correctable(job)
    labels = catalogs.of(version)
    predicted = _predicted(job.result or {})
    where = f"the catalog of version {version}"
    if body.not_in_catalog:
        label = str(body.label)
        if label in labels.sku_index:
            raise InvalidLabel(f'{label!r} is a SKU of {where}: send {{"sku": {label!r}}}')
        model = body.model or predicted["model"]
        return _made(job, NOT_IN_CATALOG, label, model, body.note, predicted)
    if body.sku is not None:
        owner = _model_of(labels, body.sku)
        if owner is None:
            raise InvalidLabel(f"sku {body.sku!r} is not in {where}; {NEW_LABEL_HINT}")
        if body.model is not None and body.model != owner:
            raise InvalidLabel(f"sku {body.sku!r} belongs to model {owner!r}, not {body.model!r}")
        return _made(job, SKU, body.sku, owner, body.note, predicted)
    if body.model not in labels.model_index:
        raise InvalidLabel(f"model {body.model!r} is not in {where}; {NEW_LABEL_HINT}")
    return _made(job, MODEL, None, body.model, body.note, predicted)


def _made(
    job: Job,
    kind: str,
    sku: str | None,
    model: str | None,
    note: str | None,
    predicted: dict[str, Any],
) -> Correction:
    return Correction(
        kind=kind,
        sku=sku,
        model=model,
        note=note,
        job_id=job.id,
        tenant=job.tenant,
        batch_id=job.batch_id,
        ref=job.ref,
        model_version=job.model_version,
        predicted=predicted,
    )


def _model_of(labels: Labels, sku: str) -> str | None:
    for model in labels.models:
        if sku in labels.skus_by_model[model]:
            return model
    return None


def _predicted(result: dict[str, Any]) -> dict[str, Any]:
    """What the job answered, in short."""
    return {
        "decision": result.get("decision"),
        "model": (result.get("model") or {}).get("label"),
        "sku": (result.get("sku") or {}).get("label"),
        "confidence": (result.get("sku") or {}).get("confidence"),
    }


def record(svc: Services, job: Job, body: FeedbackBody, catalogs: Catalogs) -> Recorded:
    """Check and store the correction; then count, announce and maybe keep it. A repeat does
    these again (an error after storing must not lose them): the event's id is fixed by the
    job and the correction's number, so it is sent once, and the metric counts once."""
    feedback = FeedbackStore(svc.conn)
    recorded = feedback.record(job.tenant, job.id, correction_of(job, body, catalogs))
    correction = recorded.correction
    svc.events.job_corrected(job.id, correction.seq)
    if feedback.first_announcement(job.tenant, job.id, correction.seq):
        ClusterMetrics(svc.conn).count(
            "skuai_corrections", kind=correction.kind, model_version=job.model_version or ""
        )
    _keep_corrected(svc, job)
    return recorded


def _keep_corrected(svc: Services, job: Job) -> None:
    """For a tenant keeping corrected jobs: mark the kept (or pending) image, or keep the image
    if it is still in the store (the sweeper deletes it SKUAI_UPLOAD_TIMEOUT after the job
    finished; pending ones last SKUAI_REVIEW_CORRECTION_WINDOW). Best effort: the correction
    stands whatever happens here."""
    if svc.jobs.blobs is None:
        return
    review = ReviewStore(svc.conn, svc.jobs.blobs)
    try:
        if CORRECTED not in review.settings(job.tenant).keep:
            return
        held = review.find(job.tenant, job.id)
        if review.keep(job, b"", [CORRECTED]) is not None:  # kept or held already
            if held is not None and PENDING in held.reasons:  # newly kept for review
                ClusterMetrics(svc.conn).count("skuai_review_kept", reason=CORRECTED)
            return
        if (image := svc.jobs.image(job.id)) is not None:
            review.keep(job, image, [CORRECTED])
            ClusterMetrics(svc.conn).count("skuai_review_kept", reason=CORRECTED)
    except SkuaiError as exc:
        log.warning("could not keep a corrected job's image: %s", exc, extra={"job_id": job.id})
