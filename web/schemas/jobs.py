"""`/v1/jobs` shapes: a submission (JSON or multipart), the long-poll query and a job."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared import defaults
from shared.decisions import Decision
from web.schemas.common import (
    IMAGE_DESCRIPTION,
    CallbackUrl,
    ErrorDetail,
    FormMetadata,
    Metadata,
    UploadedFile,
)

MAX_REF_LENGTH = 1024
IMAGE_LIMIT = "; at most SKUAI_MAX_IMAGE_BYTES decoded bytes (413 beyond)"


class JobJson(BaseModel):
    """One image as base64 in a JSON body."""

    image_base64: str = Field(
        min_length=1,
        description=IMAGE_DESCRIPTION + ", strict base64" + IMAGE_LIMIT,
        json_schema_extra={"contentEncoding": "base64"},
    )
    ref: str | None = Field(
        None, max_length=MAX_REF_LENGTH, description="the caller's name for the image"
    )
    metadata: Metadata = Field(default_factory=dict)
    callback_url: CallbackUrl = None


class JobForm(BaseModel):
    """One image as the multipart file `image`; its file name is the job's `ref`."""

    image: UploadedFile = Field(
        description=IMAGE_DESCRIPTION + "; at most SKUAI_MAX_IMAGE_BYTES (413 beyond)"
    )
    metadata: FormMetadata = Field(default_factory=dict)
    callback_url: CallbackUrl = None


class JobWait(BaseModel):
    """`?wait=S`: hold the request up to S seconds until the job is final."""

    wait: float = Field(
        0.0,
        ge=0,
        le=defaults.MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="seconds to long-poll (capped per API key by SKUAI_MAX_WAITS_PER_KEY)",
    )


class Label(BaseModel):
    """A predicted label with its confidence."""

    label: str
    confidence: float


class Candidate(BaseModel):
    """One (model, SKU) pair the cascade considered."""

    model: str
    sku: str
    confidence: float


class Result(BaseModel):
    """What the cascade predicted; `sku` and `candidates` are its best guesses whatever the
    decision."""

    decision: Decision = Field(
        description="how far the answer goes: 'sku' (a catalog SKU, confidently), 'model' (the "
        "model is known, the colourway uncertain or not in the catalog: trust `model`, not "
        "`sku`) or 'unknown' (not a catalog model)"
    )
    model: Label
    sku: Label
    candidates: list[Candidate] = Field(max_length=5)


class Job(BaseModel):
    """One image's job."""

    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    batch_id: str | None
    ref: str | None
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None
    model_version: str | None
    metadata: dict[str, Any]
    result: Result | None
    error: ErrorDetail | None
