"""`/v1/models`: the active version, the versions workers serve right now, labels, metrics and
lineage (where each version comes from)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Blueprint, Response, jsonify

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
    return jsonify(
        {
            "active": registry.active(),
            "live": dict(sorted(live.items())),
            "versions": [
                _describe(registry, v.name, v.active, v.metrics, v.lineage)
                for v in registry.versions()
            ],
        }
    )


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
