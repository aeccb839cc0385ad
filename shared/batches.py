"""The batch record: many jobs with exact counts, and its public JSON shape."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.decisions import DECISIONS, SKU
from shared.jobs import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, utc_now
from shared.redis_client import text

COMPLETED = "completed"
COUNTED = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)


def new_batch_id() -> str:
    """A random, URL-safe batch id."""
    return "bat_" + uuid.uuid4().hex


@dataclass
class Batch:
    """Many images submitted together; completes when none is queued or running."""

    id: str
    tenant: str
    status: str = QUEUED
    total: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    decisions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECISIONS, 0))
    created_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    model_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None

    def to_public(self) -> dict[str, Any]:
        """The batch as the API and webhooks show it (README.md#http-api)."""
        return {
            "id": self.id,
            "status": self.status,
            "total": self.total,
            "counts": self.counts,
            "decisions": self.decisions,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "model_version": self.model_version,
            "metadata": self.metadata,
        }

    def to_hash(self) -> dict[str, str]:
        """Initial Redis hash fields (counts start at zero, the batch unsealed)."""
        fields = {
            "id": self.id,
            "tenant": self.tenant,
            "status": self.status,
            "total": "0",
            "sealed": "0",
            "created_at": self.created_at,
            "metadata": json.dumps(self.metadata),
            **{status: "0" for status in COUNTED},
        }
        if self.callback_url:
            fields["callback_url"] = self.callback_url
        return fields

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Batch:
        """Rebuild a batch from its Redis hash."""
        f = {text(k): text(v) for k, v in raw.items()}
        counts = {status: int(f.get(status, 0)) for status in COUNTED}
        return cls(
            id=f["id"],
            tenant=f["tenant"],
            status=f["status"],
            total=int(f.get("total", 0)),
            counts=counts,
            decisions=decision_counts(counts[SUCCEEDED], f),
            created_at=f["created_at"],
            finished_at=f.get("finished_at"),
            model_version=f.get("model_version"),
            metadata=json.loads(f.get("metadata", "{}")),
            callback_url=f.get("callback_url"),
        )


def decision_counts(succeeded: int, fields: Mapping[str, str]) -> dict[str, int]:
    """Succeeded jobs per decision. The store's scripts count the decisions other than 'sku'
    (`decided:<decision>`, moved with `succeeded`), so the rest are SKUs: a result stored
    before decisions existed counts as the SKU it reads as."""
    decided = {d: int(fields.get(f"decided:{d}", 0)) for d in DECISIONS if d != SKU}
    return {SKU: succeeded - sum(decided.values()), **decided}
