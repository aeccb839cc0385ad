"""Shapes of `/healthz`, `/readyz` and `/v1/models`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether Redis answers and an inference worker has a model loaded, and why not."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Any]


class DataCheckSummary(BaseModel):
    """The counts of the data check a version was trained after (`skuai data check`)."""

    files: int
    usable_images: int
    models: int
    skus: int
    errors: int
    warnings: int


class Lineage(BaseModel):
    """Where a version comes from: its parent (null for a full train; an incremental version,
    `skuai train DATA --from VERSION`, names the version it started from), the SKUs and models it
    added to and removed from the parent's catalog, and its data check's counts."""

    parent: str | None
    added_skus: list[str]
    removed_skus: list[str]
    added_models: list[str]
    removed_models: list[str]
    data_check: DataCheckSummary | None = None


class ModelVersion(BaseModel):
    """One version in the registry."""

    version: str
    active: bool
    labels: dict[str, Any]
    metrics: dict[str, float | None]
    lineage: Lineage | None = None  # null: a version trained before lineage was recorded


class Models(BaseModel):
    """The registry as the API sees it, and what the workers serve."""

    active: str | None
    live: dict[str, int]
    versions: list[ModelVersion]
