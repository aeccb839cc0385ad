"""ReviewStore: images a tenant chose to keep for review (`PUT /v1/review/settings`).

Nothing is kept without the tenant's opt-in. An opted-in tenant keeps the images of uncertain
jobs (a decision other than `sku`, or a top confidence under its threshold), of a random sample,
and of corrected jobs, each under `review/<tenant>/<job id>` in the blob store (the orphan sweep
looks only under `images/`, so these outlive the upload). Each tenant has a retention period
and a size cap: past the cap the oldest are evicted first, past the retention they are removed
whenever the tenant keeps, lists or exports. Redis holds the index: the item's fields, a sorted
set by when it was kept, and the bytes kept in total."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from shared import keys
from shared.blobs import BlobStore
from shared.jobs import Job, utc_now
from shared.redis_client import text

UNCERTAIN = "uncertain"
SAMPLE = "sample"
CORRECTED = "corrected"
REASONS = (UNCERTAIN, SAMPLE, CORRECTED)
DEFAULT_MIN_CONFIDENCE = 0.5
PREFIX = "review/"
PAGE = 200


@dataclass(frozen=True)
class ReviewSettings:
    """A tenant's opt-in: what to keep, for how long, and how much at most."""

    keep: tuple[str, ...] = ()
    sample: float = 0.0  # share of all finished jobs kept at random
    retention_days: float = 30.0
    cap_mb: float = 500.0
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # under it, a `sku` decision is uncertain

    @property
    def enabled(self) -> bool:
        """Whether anything is kept at all."""
        return bool(self.keep)

    @property
    def cap_bytes(self) -> int:
        """The size cap in bytes."""
        return int(self.cap_mb * 1024 * 1024)

    @property
    def retention_seconds(self) -> float:
        """The retention in seconds."""
        return self.retention_days * 86400

    def to_public(self) -> dict[str, Any]:
        """As the API shows it."""
        return {**asdict(self), "keep": list(self.keep)}

    def reasons_for(self, job: Job) -> list[str]:
        """Why this finished job's image would be kept (uncertain, sample), if at all."""
        if job.result is None:
            return []
        found = []
        confidence = float((job.result.get("sku") or {}).get("confidence", 1.0))
        uncertain = job.result.get("decision", "sku") != "sku" or confidence < self.min_confidence
        if UNCERTAIN in self.keep and uncertain:
            found.append(UNCERTAIN)
        if SAMPLE in self.keep and _draw(job.id) < self.sample:
            found.append(SAMPLE)
        return found


@dataclass(frozen=True)
class ReviewItem:
    """One kept image and what is known of its job."""

    job_id: str
    tenant: str
    reasons: tuple[str, ...]
    size: int  # bytes
    batch_id: str | None = None
    ref: str | None = None
    decision: str | None = None
    model_version: str | None = None
    result: dict[str, Any] | None = None
    kept_at: str = field(default_factory=utc_now)
    kept_epoch: float = field(default_factory=time.time)

    @property
    def blob_key(self) -> str:
        """Where the image is."""
        return blob_key(self.tenant, self.job_id)

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({**asdict(self), "reasons": list(self.reasons)})

    @classmethod
    def from_json(cls, raw: str | bytes) -> ReviewItem:
        """Read the stored form back."""
        data = json.loads(raw)
        data["reasons"] = tuple(data["reasons"])
        return cls(**data)

    @classmethod
    def of_job(cls, job: Job, reasons: list[str], size: int) -> ReviewItem:
        """A new item for a job."""
        decision = (job.result or {}).get("decision")
        return cls(
            job_id=job.id,
            tenant=job.tenant,
            reasons=tuple(reasons),
            size=size,
            batch_id=job.batch_id,
            ref=job.ref,
            decision=decision,
            model_version=job.model_version,
            result=job.result,
        )


def _draw(job_id: str) -> float:
    """A number in [0, 1) fixed by the job id: a chunk run twice samples the same jobs."""
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) / 2**32


def _ids(raw: Any) -> list[str]:
    return [text(j) for j in raw]


def blob_key(tenant: str, job_id: str) -> str:
    """The blob key of a kept image."""
    return f"{PREFIX}{tenant}/{job_id}"


def settings_key(tenant: str) -> str:
    """The tenant's opt-in (JSON)."""
    return f"{keys.NAMESPACE}:review:{tenant}:settings"


def items_key(tenant: str) -> str:
    """Hash: job id -> the kept item (JSON)."""
    return f"{keys.NAMESPACE}:review:{tenant}:items"


def order_key(tenant: str) -> str:
    """Sorted set: job id -> when it was kept (listing and eviction order)."""
    return f"{keys.NAMESPACE}:review:{tenant}:order"


def bytes_key(tenant: str) -> str:
    """Bytes kept for the tenant in total."""
    return f"{keys.NAMESPACE}:review:{tenant}:bytes"


OPTED_IN = f"{keys.NAMESPACE}:review:tenants"  # tenants keeping anything: workers check it first
KEEPING = f"{keys.NAMESPACE}:review:keeping"  # tenants with kept images (the sweeper expires them)


class ReviewStore:
    """Opt-ins and kept images; Redis and the blob store are passed in."""

    def __init__(self, conn: redis.Redis, blobs: BlobStore) -> None:
        self.conn = conn
        self.blobs = blobs

    def settings(self, tenant: str) -> ReviewSettings:
        """The tenant's opt-in (nothing kept when it never opted in)."""
        raw = self.conn.get(settings_key(tenant))
        if not raw:
            return ReviewSettings()
        data = json.loads(raw)
        return ReviewSettings(**{**data, "keep": tuple(data["keep"])})

    def configure(self, tenant: str, settings: ReviewSettings) -> ReviewSettings:
        """Store the tenant's opt-in (an empty `keep` opts out: nothing new is kept)."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.set(settings_key(tenant), json.dumps(settings.to_public()))
            if settings.enabled:
                pipe.sadd(OPTED_IN, tenant)
            else:
                pipe.srem(OPTED_IN, tenant)
            pipe.execute()
        self.enforce(tenant, settings)  # a smaller cap or retention applies at once
        return settings

    def opted_in(self) -> set[str]:
        """Tenants keeping anything."""
        return {text(t) for t in self.conn.smembers(OPTED_IN)}

    def keep(self, job: Job, image: bytes, reasons: list[str]) -> ReviewItem:
        """Keep the job's image (or add reasons to the kept one); then enforce the cap."""
        current = self.find(job.tenant, job.id)
        if current is not None:
            merged = tuple(dict.fromkeys([*current.reasons, *reasons]))
            item = ReviewItem(**{**asdict(current), "reasons": merged})
            self.conn.hset(items_key(job.tenant), job.id, item.to_json())
            return item
        item = ReviewItem.of_job(job, reasons, len(image))
        self.blobs.put(item.blob_key, image)
        if not self.conn.hsetnx(items_key(job.tenant), job.id, item.to_json()):
            return self.keep(job, image, reasons)  # kept meanwhile (a chunk run twice): merge
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.zadd(order_key(job.tenant), {job.id: item.kept_epoch})
            pipe.incrby(bytes_key(job.tenant), item.size)
            pipe.sadd(KEEPING, job.tenant)
            pipe.execute()
        self.enforce(job.tenant)
        return item

    def find(self, tenant: str, job_id: str) -> ReviewItem | None:
        """The kept item, or None."""
        raw = self.conn.hget(items_key(tenant), job_id)
        return ReviewItem.from_json(raw) if raw else None

    def image(self, tenant: str, job_id: str) -> bytes | None:
        """The kept image's bytes, or None."""
        return self.blobs.get(blob_key(tenant, job_id))

    def page(self, tenant: str, offset: int, count: int) -> list[ReviewItem]:
        """Kept items, newest first, from position `offset`."""
        ids = _ids(self.conn.zrevrange(order_key(tenant), offset, offset + count - 1))
        if not ids:
            return []
        raw: list[Any] = self.conn.hmget(items_key(tenant), ids)
        return [ReviewItem.from_json(r) for r in raw if r]

    def delete(self, tenant: str, job_ids: list[str]) -> int:
        """Remove kept items and their images; returns how many there were."""
        found = [i for i in (self.find(tenant, j) for j in job_ids) if i is not None]
        if not found:
            return 0
        self.blobs.delete_many([i.blob_key for i in found])
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.hdel(items_key(tenant), *[i.job_id for i in found])
            pipe.zrem(order_key(tenant), *[i.job_id for i in found])
            pipe.decrby(bytes_key(tenant), sum(i.size for i in found))
            pipe.execute()
        return len(found)

    def delete_all(self, tenant: str) -> int:
        """Remove every kept item of the tenant."""
        removed = 0
        while ids := _ids(self.conn.zrange(order_key(tenant), 0, PAGE - 1)):
            removed += self.delete(tenant, ids)
            self.conn.zrem(order_key(tenant), *ids)  # an index entry without its item
        return removed

    def kept_bytes(self, tenant: str) -> int:
        """Bytes kept for the tenant."""
        return int(self.conn.get(bytes_key(tenant)) or 0)

    def kept_count(self, tenant: str) -> int:
        """Images kept for the tenant."""
        return int(self.conn.zcard(order_key(tenant)))

    def enforce(self, tenant: str, settings: ReviewSettings | None = None) -> int:
        """Remove what is past the retention, then the oldest until under the cap."""
        settings = settings or self.settings(tenant)
        cutoff = time.time() - settings.retention_seconds
        expired = _ids(self.conn.zrangebyscore(order_key(tenant), "-inf", cutoff))
        removed = self.delete(tenant, expired) if expired else 0
        while self.kept_bytes(tenant) > settings.cap_bytes:
            oldest = _ids(self.conn.zrange(order_key(tenant), 0, 0))
            if not oldest:
                break
            removed += self.delete(tenant, oldest[:1])
            self.conn.zrem(order_key(tenant), oldest[0])
        return removed
