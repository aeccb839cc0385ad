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


class ModelVersion(BaseModel):
    """One version in the registry."""

    version: str
    active: bool
    labels: dict[str, Any]
    metrics: dict[str, float | None]


class Models(BaseModel):
    """The registry as the API sees it, and what the workers serve."""

    active: str | None
    live: dict[str, int]
    versions: list[ModelVersion]
