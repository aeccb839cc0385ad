"""The console's results grid: a batch's jobs filtered by decision and confidence range, sorted,
a page at a time. The API pages in upload order only, so the console reads the batch's NDJSON
export (the API's own view: Redis or the result archive) and filters and sorts here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field

from web.schemas.batches import ExportQuery

GRID_PAGE = 48
Sort = Literal["upload", "confidence", "-confidence", "ref"]


class GridQuery(ExportQuery):
    """Which results the grid shows."""

    min: float = Field(0.0, ge=0.0, le=1.0, description="lowest confidence shown")
    max: float = Field(1.0, ge=0.0, le=1.0, description="highest confidence shown")
    sort: Sort = "upload"
    page: int = Field(1, ge=1, le=100_000)


class GridPage(BaseModel):
    """One page of the grid."""

    items: list[dict[str, Any]]
    page: int
    pages: int
    matched: int


def confidence(job: dict[str, Any]) -> float | None:
    """What the grid filters and sorts on: the SKU's confidence, or the model's for a result
    that only goes as far as the model (None for a job without a result)."""
    result = job.get("result") or {}
    if not result:
        return None
    part = result.get("model") if result.get("decision") in ("model", "unknown") else None
    value = (part or result.get("sku") or {}).get("confidence")
    return float(value) if isinstance(value, int | float) else None


def grid_page(jobs: Iterable[dict[str, Any]], query: GridQuery) -> GridPage:
    """The page of `query` out of a batch's jobs (public shapes, already filtered by decision)."""
    ranged = query.min > 0.0 or query.max < 1.0
    kept = []
    for job in jobs:
        score = confidence(job)
        if ranged and (score is None or not query.min <= score <= query.max):
            continue
        kept.append((job, score))
    if query.sort == "ref":
        kept.sort(key=lambda pair: pair[0].get("ref") or "")
    elif query.sort in ("confidence", "-confidence"):
        descending = query.sort == "-confidence"
        kept.sort(key=lambda pair: pair[1] if pair[1] is not None else -1.0, reverse=descending)
    pages = max(1, -(-len(kept) // GRID_PAGE))
    page = min(query.page, pages)
    chosen = kept[(page - 1) * GRID_PAGE : page * GRID_PAGE]
    items = [{**job, "confidence": score} for job, score in chosen]
    return GridPage(items=items, page=page, pages=pages, matched=len(kept))
