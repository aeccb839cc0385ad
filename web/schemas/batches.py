"""`/v1/batches` shapes: a submission (URLs in JSON, or files and archives), counts, pages."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

from shared import defaults
from shared.decisions import FILTER_PATTERN, Decision, parse_filter
from web.idempotency import MAX_KEY_LENGTH
from web.schemas.common import (
    IMAGE_DESCRIPTION,
    CallbackUrl,
    FormMetadata,
    Metadata,
    UploadedFile,
    Url,
)
from web.schemas.jobs import Job

MAX_RESULTS_PAGE = 1000  # jobs in one page of results
BATCH_LIMIT = "at most SKUAI_MAX_BATCH_IMAGES images in all"


class ImageUrl(BaseModel):
    """An image the workers fetch."""

    url: Url = Field(description=IMAGE_DESCRIPTION + "; a public http(s) URL")
    ref: str | None = Field(None, description="the caller's name for the image (default: the URL)")


class BatchJson(BaseModel):
    """Images by URL in a JSON body."""

    images: list[ImageUrl] = Field(min_length=1, description=BATCH_LIMIT)
    metadata: Metadata = Field(default_factory=dict)
    callback_url: CallbackUrl = None


class BatchForm(BaseModel):
    """Image files and archives (zip, tar, tar.gz) in a multipart body."""

    images: list[UploadedFile] = Field(
        default_factory=list,
        description=IMAGE_DESCRIPTION + "; each at most SKUAI_MAX_IMAGE_BYTES (refused alone "
        "beyond); " + BATCH_LIMIT,
    )
    archive: list[UploadedFile] = Field(
        default_factory=list,
        description="zip or tar archives of images, at most SKUAI_MAX_ARCHIVE_BYTES unpacked and "
        "SKUAI_MAX_ARCHIVE_SECONDS to unpack",
    )
    metadata: FormMetadata = Field(default_factory=dict)
    callback_url: CallbackUrl = None


class IdempotencyHeader(BaseModel):
    """`Idempotency-Key`: a retry with the same key and body returns the same batch."""

    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        max_length=MAX_KEY_LENGTH,
        description="reused with another request it is a 422",
    )


# `?decision=model,unknown`: parsed by one function (shared/decisions.py), whose 400 names the
# accepted values; the document gives the pattern it accepts.
DecisionFilter = Annotated[
    tuple[Decision, ...] | None,
    BeforeValidator(parse_filter),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": FILTER_PATTERN,
            "description": "only succeeded jobs with one of these decisions, comma-separated "
            "(e.g. model,unknown), in upload order; `cursor` stays an upload position. "
            "Applies to the CSV and NDJSON exports too",
        }
    ),
]


class ExportQuery(BaseModel):
    """What a CSV or NDJSON export of a batch's results holds."""

    decision: DecisionFilter = None


class ResultsQuery(ExportQuery):
    """Paging through a batch's jobs in upload order."""

    cursor: int = Field(
        0, ge=0, description="where the page starts (an upload position); at most the batch's total"
    )
    limit: int = Field(defaults.RESULTS_PAGE, ge=1, le=MAX_RESULTS_PAGE, description="jobs a page")


class Counts(BaseModel):
    """Jobs of the batch in each status."""

    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class Decisions(BaseModel):
    """Succeeded jobs of the batch by decision (they add up to `counts.succeeded`)."""

    sku: int
    model: int
    unknown: int


class Batch(BaseModel):
    """A batch and its exact counts."""

    id: str
    status: Literal["queued", "running", "completed", "canceled"]
    total: int
    counts: Counts
    decisions: Decisions
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None
    model_version: str | None
    metadata: dict[str, Any]


class ResultsPage(BaseModel):
    """A page of jobs; `next_cursor` is null on the last."""

    items: list[Job]
    next_cursor: str | None = Field(pattern="^[0-9]+$")
