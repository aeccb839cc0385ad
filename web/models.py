"""`/v1/models`: the active version, the versions workers serve right now, labels, metrics and
lineage (where each version comes from), the challenger in the shadow with its score, and the
retraining trigger's last run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Blueprint, Response, jsonify

from shared.feedback_store import FeedbackStore
from shared.shadow_store import ShadowStore
from training.registry import Registry
from web.openapi import declare
from web.schemas.service import Models
from web.services import services

bp = Blueprint("models", __name__, url_prefix="/v1/models")
HEADLINE = ("sku_top1", "sku_top5", "model_top1", "expected_calibration_error")


@bp.get("")
@declare(
    ok={200: (Models, "The registry as the API sees it")}, errors=(503,), operation_id="listModels"
)
def list_models() -> Response:
    """What the registry holds (where the API can read it) and what the workers have loaded."""
    svc = services()
    live: Counter[str] = Counter()
    for worker in svc.workers.online():
        for version in worker.get("loaded_versions") or []:
            live[version] += 1
    registry = Registry(svc.settings.registry_dir)
    shadows = ShadowStore(svc.conn, ttl=svc.settings.result_ttl)
    return jsonify(
        {
            "active": registry.active(),
            "live": dict(sorted(live.items())),
            "versions": [
                _describe(registry, v.name, v.active, v.metrics, v.lineage)
                for v in registry.versions()
            ],
            "shadow": _shadow(shadows, registry.active(), FeedbackStore(svc.conn)),
            "retrain": shadows.retrain_status(),
        }
    )


def _shadow(
    shadows: ShadowStore, active: str | None, feedback: FeedbackStore
) -> dict[str, Any] | None:
    """The challenger in the shadow and its score against the active version."""
    config = shadows.config()
    if config is None:
        return None
    found = config.to_public()
    if active is not None:
        found["comparison"] = shadows.compare(active, config.version, feedback)
    return found


def _describe(
    registry: Registry,
    name: str,
    active: bool,
    metrics: dict[str, Any],
    lineage: dict[str, Any] | None,
) -> dict[str, Any]:
    end_to_end = metrics.get("end_to_end", {})
    return {
        "version": name,
        "active": active,
        "labels": registry.labels(name).to_dict(),
        "metrics": {key: end_to_end.get(key) for key in HEADLINE},
        "lineage": lineage,
    }
