"""`/healthz` (liveness, cheap) and `/readyz` (Redis answers, the blob store takes writes, an
inference worker is ready)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from shared.errors import SkuaiError
from web.openapi import declare
from web.schemas.service import Health, Readiness
from web.services import Services, services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@declare(ok={200: (Health, "The API process is up")}, public=True, operation_id="healthz")
def healthz() -> Response:
    """The process is up; touches nothing else."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@declare(
    ok={200: (Readiness, "Ready"), 503: (Readiness, "Not ready")},
    public=True,
    operation_id="readyz",
)
def readyz() -> tuple[Response, int]:
    """Ready when Redis answers, the blob store takes a write, and at least one inference
    worker has a model loaded."""
    svc = services()
    checks: dict[str, object] = {}
    live: list[dict[str, object]] = []
    try:  # each command waits at most SKUAI_REDIS_TIMEOUT: a frozen Redis is a quick 503
        svc.conn.ping()
        checks["redis"] = "ok"
        live = [w for w in svc.workers.online() if w.get("model_version")]
        checks["inference_workers"] = len(live)
        checks["model_versions"] = sorted({str(w["model_version"]) for w in live})
    except redis.TimeoutError:
        checks["redis"] = f"no answer within {svc.settings.redis_timeout:g} s"
        live = []
    except Exception as exc:  # readiness reports failures rather than raising them
        checks["redis"] = f"unreachable: {exc.__class__.__name__}"
        live = []
    checks["blob_store"] = _blob_store(svc)
    ready = checks.get("redis") == "ok" and checks["blob_store"] == "ok" and bool(live)
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (
        200 if ready else 503
    )


def _blob_store(svc: Services) -> str:
    """ "ok", or why an upload would be refused now (a full or unwritable store, S3 down)."""
    if svc.jobs.blobs is None:
        return "ok"
    try:
        svc.jobs.blobs.check()
    except SkuaiError as exc:
        return exc.message
    return "ok"
