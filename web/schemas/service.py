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


class Agreement(BaseModel):
    """Shares of the scored live jobs where both versions gave the same answer (null: none
    scored yet)."""

    sku: float | None
    model: float | None
    decision: float | None


class Disagreement(BaseModel):
    """Live jobs where the champion answered one SKU and the challenger another."""

    champion_sku: str
    challenger_sku: str
    count: int


class CorrectedScore(BaseModel):
    """Both versions on the jobs later corrected that both answered: how many, how many each
    got right, and the share (null: no such job yet)."""

    jobs: int
    correct: dict[str, int]
    accuracy: dict[str, float | None]


class ShadowComparison(BaseModel):
    """A challenger scored in the shadow of a champion (`skuai models compare`)."""

    champion: str
    challenger: str
    scored: int
    agreement: Agreement
    disagreements: list[Disagreement]
    corrected: CorrectedScore


class Shadow(BaseModel):
    """The challenger in the shadow (`skuai models shadow VERSION --sample S`): the share of
    live images it also sees, since when (epoch seconds), and its score against the active
    version. Its answers are never returned to clients."""

    version: str
    sample: float
    since: float
    comparison: ShadowComparison | None = None  # null while no version is active


class Retrain(BaseModel):
    """The last run of the retraining trigger (SKUAI_RETRAIN_CORRECTIONS): running, succeeded
    (its version is in the shadow, not active) or failed (and why)."""

    state: Literal["running", "succeeded", "failed"]
    started_at: str
    finished_at: str | None = None
    corrections: int
    parent: str | None = None
    version: str | None = None
    error: str | None = None


class Models(BaseModel):
    """The registry as the API sees it, and what the workers serve."""

    active: str | None
    live: dict[str, int]
    versions: list[ModelVersion]
    shadow: Shadow | None = None  # null: no challenger in the shadow
    retrain: Retrain | None = None  # null: the retraining trigger never ran
