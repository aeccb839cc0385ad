"""The job record: one image, its status and its prediction, and its public JSON shape."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.decisions import with_decision
from shared.redis_client import text

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELED})


def new_job_id() -> str:
    """A random, URL-safe job id."""
    return "job_" + uuid.uuid4().hex


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """One image submitted for classification."""

    id: str
    tenant: str
    status: str = QUEUED
    batch_id: str | None = None
    ref: str | None = None
    created_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    model_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    callback_url: str | None = None
    source_url: str | None = None  # fetched by the worker instead of uploaded
    duplicate_of: str | None = None  # same bytes as this job of the batch; classified once

    @property
    def is_final(self) -> bool:
        """True once the job succeeded, failed or was canceled."""
        return self.status in FINAL_STATUSES

    def to_public(self) -> dict[str, Any]:
        """The job as the API and webhooks show it (README.md#http-api)."""
        return {
            "id": self.id,
            "status": self.status,
            "batch_id": self.batch_id,
            "ref": self.ref,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "model_version": self.model_version,
            "metadata": self.metadata,
            "result": self.result,
            "error": self.error,
        }

    def to_hash(self) -> dict[str, str]:
        """Flat string fields for a Redis hash; absent values are left out."""
        fields: dict[str, Any] = {
            "id": self.id,
            "tenant": self.tenant,
            "status": self.status,
            "batch_id": self.batch_id,
            "ref": self.ref,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "model_version": self.model_version,
            "metadata": json.dumps(self.metadata),
            "result": json.dumps(self.result) if self.result is not None else None,
            "error": json.dumps(self.error) if self.error is not None else None,
            "callback_url": self.callback_url,
            "source_url": self.source_url,
            "duplicate_of": self.duplicate_of,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Job:
        """Rebuild a job from the Redis hash written by `to_hash` (bytes or str fields)."""
        fields = {text(key): text(value) for key, value in raw.items()}
        return cls(
            id=fields["id"],
            tenant=fields["tenant"],
            status=fields["status"],
            batch_id=fields.get("batch_id"),
            ref=fields.get("ref"),
            created_at=fields["created_at"],
            finished_at=fields.get("finished_at"),
            model_version=fields.get("model_version"),
            metadata=json.loads(fields.get("metadata", "{}")),
            # A result stored before decisions existed reads as a catalog SKU.
            result=with_decision(json.loads(fields["result"])) if "result" in fields else None,
            error=json.loads(fields["error"]) if "error" in fields else None,
            callback_url=fields.get("callback_url"),
            source_url=fields.get("source_url"),
            duplicate_of=fields.get("duplicate_of"),
        )
