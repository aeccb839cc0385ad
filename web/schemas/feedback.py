"""Corrections (`POST /v1/jobs/{id}/feedback`, `POST /v1/batches/{id}/feedback`) and the review
queue (`/v1/review`) shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.decisions import Decision
from shared.errors import BadRequest
from shared.review_store import MAX_CAP_MB, MAX_RETENTION_DAYS

MAX_NOTE = 1000
MAX_ROWS = 10_000
# A label becomes a folder name in the dataset layout (DATA/<model>/<sku>/): no separators,
# nothing hidden, nothing a shell treats specially.
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
Label = Annotated[
    str,
    Field(
        pattern=LABEL_PATTERN,
        description="a label: 1-100 letters, digits, '.', '_' or '-', starting with a letter "
        "or digit",
    ),
]
Reason = Literal["uncertain", "sample", "corrected"]


class FeedbackBody(BaseModel):
    """What the job shows: a catalog `sku`, a catalog `model` (colourway not given), or
    `not_in_catalog` with the new `label` (and optionally the `model` it belongs to)."""

    # Strict: `"not_in_catalog": "no"` is refused, not read as a boolean.
    model_config = ConfigDict(extra="forbid", strict=True)

    sku: Label | None = Field(None, description="a SKU of the job's model version's catalog")
    model: Label | None = Field(
        None,
        description="a model of the catalog; with not_in_catalog, the model the new label "
        "belongs to (a new one too), else the job's predicted model is assumed",
    )
    not_in_catalog: bool = Field(False, description="the job shows a SKU the catalog lacks")
    label: Label | None = Field(None, description="with not_in_catalog: the new SKU's name")
    note: str | None = Field(None, max_length=MAX_NOTE, description="free text, kept with it")

    @model_validator(mode="after")
    def _one_kind(self) -> FeedbackBody:
        if self.not_in_catalog:
            if self.label is None:
                raise _wrong("not_in_catalog needs 'label': the name of the new SKU")
            if self.sku is not None:
                raise _wrong("with not_in_catalog send the new name as 'label', not 'sku'")
        elif self.label is not None:
            raise _wrong("a new 'label' needs \"not_in_catalog\": true")
        elif self.sku is None and self.model is None:
            raise _wrong("send 'sku', 'model', or 'not_in_catalog' with 'label'")
        return self


def _wrong(message: str) -> BadRequest:
    # Not a ValueError, so pydantic lets it through as it is: the message stays one sentence.
    return BadRequest(message)


class BatchFeedbackRow(FeedbackBody):
    """One correction of a batch's job, named by its `ref` (or its `job_id`)."""

    ref: str | None = Field(None, max_length=1024, description="the image's ref in the batch")
    job_id: str | None = Field(None, max_length=100, description="instead of `ref`")


class BatchFeedbackJson(BaseModel):
    """Many corrections at once; each row is checked on its own. Also accepted as `text/csv`
    with the header `ref,sku,model,not_in_catalog,label,note` (`job_id` optional)."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description="rows shaped as BatchFeedbackRow; a row that is not gets its own error",
    )


class Correction(BaseModel):
    """A correction, with the job's prediction as it was when it came."""

    kind: Literal["sku", "model", "not_in_catalog"]
    sku: str | None = Field(description="the SKU (for not_in_catalog: the new label)")
    model: str | None
    not_in_catalog: bool
    label: str | None
    note: str | None
    seq: int = Field(description="1 for the job's first correction, then 2, ...")
    at: str = Field(json_schema_extra={"format": "date-time"})
    predicted: dict[str, Any] | None
    model_version: str | None


class Feedback(BaseModel):
    """A job's standing correction (the last one) and its history, oldest first."""

    job_id: str
    correction: Correction | None
    history: list[Correction]


class RowError(BaseModel):
    """Why one row was not recorded."""

    code: str
    message: str


class BatchFeedbackRowResult(BaseModel):
    """What became of one row."""

    row: int = Field(description="0-based position in `items` (CSV: data line)")
    ref: str | None
    job_id: str | None
    outcome: Literal["recorded", "unchanged", "error"]
    correction: Correction | None = None
    error: RowError | None = None


class BatchFeedback(BaseModel):
    """Every row's outcome, and the counts."""

    recorded: int
    unchanged: int
    failed: int
    items: list[BatchFeedbackRowResult]


class ReviewSettingsBody(BaseModel):
    """The tenant's review opt-in; `keep: []` keeps nothing new."""

    model_config = ConfigDict(extra="forbid", strict=True)

    keep: list[Reason] = Field(
        description="uncertain: a decision other than sku, or sku confidence under "
        "min_confidence; sample: a random share of jobs; corrected: jobs that get a correction "
        "within the correction window (each finished image is held pending until then)"
    )
    sample: float = Field(0.0, ge=0, le=1, description="share of jobs kept with 'sample'")
    retention_days: float = Field(
        30.0, gt=0, le=MAX_RETENTION_DAYS, description="kept this long at most"
    )
    cap_mb: float = Field(500.0, gt=0, le=MAX_CAP_MB, description="MiB kept at most; oldest go")
    min_confidence: float = Field(0.5, ge=0, le=1, description="under it a sku is uncertain")


class ReviewSettings(ReviewSettingsBody):
    """The opt-in, with what is kept now."""

    kept_bytes: int = Field(description="bytes kept, images held pending a correction included")
    kept_count: int = Field(description="images kept and listed")
    pending_count: int = Field(
        description="images held SKUAI_REVIEW_CORRECTION_WINDOW in case a correction comes "
        "(keep: corrected): not listed; a correction keeps one as corrected"
    )


MAX_CURSOR = 1_000_000_000


class ReviewQuery(BaseModel):
    """Filters and paging of `GET /v1/review` (newest first)."""

    reason: Reason | None = None
    decision: Decision | None = None
    batch_id: str | None = Field(None, max_length=100)
    since: str | None = Field(
        None,
        max_length=40,
        # No "format": a date alone (2026-11-01) is welcome too.
        description="ISO 8601 date or date and time (UTC unless it says): kept at or after it",
    )
    # Bounded: Redis reads it as a 64-bit position, and no tenant keeps a billion images.
    cursor: int = Field(0, ge=0, le=MAX_CURSOR, description="the previous page's next_cursor")
    limit: int = Field(100, ge=1, le=500)


class ReviewItem(BaseModel):
    """One kept image."""

    job_id: str
    batch_id: str | None
    ref: str | None
    reasons: list[Reason]
    decision: str | None
    model_version: str | None
    result: dict[str, Any] | None
    correction: Correction | None
    kept_at: str
    expires_at: str
    size_bytes: int
    image_url: str


class ReviewList(BaseModel):
    """A page of kept images, newest first."""

    items: list[ReviewItem]
    next_cursor: int | None


class ReviewDeleted(BaseModel):
    """How many kept images were removed."""

    deleted: int
