"""ReviewStore: images a tenant chose to keep for review (`PUT /v1/review/settings`).

Nothing is kept without the tenant's opt-in. An opted-in tenant keeps the images of uncertain
jobs (a decision other than `sku`, or a top confidence under its threshold), of a random sample,
and of corrected jobs, each under `review/<tenant>/<job id>` in the blob store (the orphan sweep
looks only under `images/`, so these outlive the upload). Each tenant has a retention period
and a size cap: past the cap the oldest are evicted first, past the retention they are removed
whenever the tenant keeps, lists or exports. A tenant keeping corrected jobs also holds every
other finished job's image as PENDING for SKUAI_REVIEW_CORRECTION_WINDOW (at most its retention):
not listed, evicted first past the cap, promoted to CORRECTED when a correction comes, removed
when the window ends. Redis holds the index: the item's fields, a sorted set by when it was kept,
one of pending images by when their window ends, and the bytes kept in total (pending included).
Keeping, merging and deleting are scripts, so concurrent keeps and deletes count bytes once."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis

from shared import keys
from shared.blobs import BlobStore
from shared.errors import ServiceUnavailable
from shared.jobs import Job, utc_now
from shared.redis_client import text
from shared.review_scripts import ADD, DELETE, MERGE

UNCERTAIN = "uncertain"
SAMPLE = "sample"
CORRECTED = "corrected"
REASONS = (UNCERTAIN, SAMPLE, CORRECTED)
PENDING = "pending"  # held for a possible correction only: not listed, expires with its window
DEFAULT_MIN_CONFIDENCE = 0.5
MAX_RETENTION_DAYS = 3650  # the API's and `skuai keys review`'s bounds
MAX_CAP_MB = 1_000_000
PREFIX = "review/"
PAGE = 200
TRIES = 5  # keep's compare-and-set rounds against concurrent keeps and deletes


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


settings_key = keys.review_settings
items_key = keys.review_items
order_key = keys.review_order
pending_key = keys.review_pending
bytes_key = keys.review_bytes
OPTED_IN = keys.REVIEW_OPTED_IN
KEEPING = keys.REVIEW_KEEPING


class ReviewStore:
    """Opt-ins and kept images; Redis and the blob store are passed in."""

    def __init__(self, conn: redis.Redis, blobs: BlobStore) -> None:
        self.conn = conn
        self.blobs = blobs
        self._add = conn.register_script(ADD)
        self._cas = conn.register_script(MERGE)
        self._delete = conn.register_script(DELETE)

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

    def keep(
        self, job: Job, image: bytes, reasons: list[str], *, hold_until: float | None = None
    ) -> ReviewItem | None:
        """Keep the job's image (or add reasons to the kept one, a pending one then listed);
        then enforce the cap. With `hold_until` (epoch seconds) the image is only held as
        PENDING until then. None when there is nothing to add to and `image` is empty."""
        pending = hold_until is not None
        for _ in range(TRIES):
            current = self.find(job.tenant, job.id)
            if current is not None:
                done = self._merge(current, [] if pending else reasons)
                if done is not None:
                    return done
                continue  # changed or deleted meanwhile: read again
            if not image:
                return None
            item = ReviewItem.of_job(job, [PENDING] if pending else reasons, len(image))
            self.blobs.put(item.blob_key, image)
            score = hold_until if hold_until is not None else item.kept_epoch
            added = self._add(
                keys=[*self._keys(job.tenant), KEEPING],
                args=[job.id, item.to_json(), score, item.size, job.tenant, int(pending)],
            )
            if int(added):
                self.enforce(job.tenant)
                return item
        raise ServiceUnavailable(f"the review item of job {job.id} kept changing: try again")

    def _merge(self, current: ReviewItem, reasons: list[str]) -> ReviewItem | None:
        """Add reasons to a kept item, if it is still as read; None when it changed or went."""
        if not reasons:  # held as pending: a kept item needs no more
            return current
        merged = tuple(dict.fromkeys([*(r for r in current.reasons if r != PENDING), *reasons]))
        if merged == current.reasons:
            return current
        promote = PENDING in current.reasons  # listed from now on, as kept now
        item = replace(current, reasons=merged)
        if promote:
            item = replace(item, kept_epoch=time.time(), kept_at=utc_now())
        done = self._cas(
            keys=self._keys(current.tenant)[:3],
            args=[current.job_id, current.to_json(), item.to_json(), int(promote), item.kept_epoch],
        )
        return item if int(done) == 1 else None

    def _keys(self, tenant: str) -> list[str]:
        return [items_key(tenant), order_key(tenant), pending_key(tenant), bytes_key(tenant)]

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
        """Remove kept items and their images; returns how many this call removed."""
        if not job_ids:
            return 0
        removed = _ids(self._delete(keys=self._keys(tenant), args=job_ids))
        if removed:
            self.blobs.delete_many([blob_key(tenant, j) for j in removed])
        return len(removed)

    def delete_all(self, tenant: str) -> int:
        """Remove every kept item of the tenant, pending ones included."""
        removed = 0
        for index in (order_key(tenant), pending_key(tenant)):
            while ids := _ids(self.conn.zrange(index, 0, PAGE - 1)):
                removed += self.delete(tenant, ids)  # also drops index entries without an item
        return removed

    def kept_bytes(self, tenant: str) -> int:
        """Bytes kept for the tenant (pending images included)."""
        return int(self.conn.get(bytes_key(tenant)) or 0)

    def kept_count(self, tenant: str) -> int:
        """Images kept for the tenant and listed (pending ones are not)."""
        return int(self.conn.zcard(order_key(tenant)))

    def pending_count(self, tenant: str) -> int:
        """Images held for a possible correction."""
        return int(self.conn.zcard(pending_key(tenant)))

    def enforce(self, tenant: str, settings: ReviewSettings | None = None) -> int:
        """Remove pending images past their window and kept ones past the retention, then the
        oldest until under the cap: pending ones first, they are only held in case."""
        settings = settings or self.settings(tenant)
        now = time.time()
        cutoff = now - settings.retention_seconds
        removed = self.delete(
            tenant, _ids(self.conn.zrangebyscore(pending_key(tenant), "-inf", now))
        )
        removed += self.delete(
            tenant, _ids(self.conn.zrangebyscore(order_key(tenant), "-inf", cutoff))
        )
        while self.kept_bytes(tenant) > settings.cap_bytes:
            oldest = _ids(self.conn.zrange(pending_key(tenant), 0, 0)) or _ids(
                self.conn.zrange(order_key(tenant), 0, 0)
            )
            if not oldest:
                break
            removed += self.delete(tenant, oldest)
        return removed
