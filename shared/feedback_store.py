"""FeedbackStore: corrections partners send for finished jobs (`POST /v1/jobs/{id}/feedback`).

Per tenant and job, the corrections form a history (oldest first) whose last entry stands.
Recording the same correction as the one standing is a no-op that returns it, so a retried
request never adds a history entry. Each correction carries a snapshot of its job (batch, ref,
version and prediction), because a job expires after SKUAI_RESULT_TTL while its corrections stay
for a year from the last one (DEFAULT_TTL): an export, a retraining trigger or a challenger's
score reads them alone. The per-tenant index drops jobs older than that whenever one is recorded.

Interface (kept stable for the shadow challenger and the retraining trigger):
`record(tenant, job_id, correction)`, `latest(tenant, job_id)`, `latest_many`, `history`,
`since(tenant, since)`, `count(tenant)`, `tenants()`."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import redis

from shared import keys
from shared.errors import BadRequest
from shared.jobs import utc_now
from shared.redis_client import text

SKU = "sku"  # the job shows this catalog SKU (its model follows from the catalog)
MODEL = "model"  # the job shows this catalog model; its colourway is not given
NOT_IN_CATALOG = "not_in_catalog"  # the job shows something the catalog lacks: a new label
KINDS = (SKU, MODEL, NOT_IN_CATALOG)
DEFAULT_TTL = 365 * 24 * 3600
PAGE = 500

# KEYS: history list, per-tenant index (zset), tenant set, counter.
# ARGV: correction JSON, its digest, epoch seconds, job id, ttl, tenant.
# Returns [created (0/1), the standing correction's JSON].
_RECORD = """
local last = redis.call('LINDEX', KEYS[1], -1)
if last then
  local standing = cjson.decode(last)
  if standing['digest'] == ARGV[2] then return {0, last} end
end
local seq = redis.call('LLEN', KEYS[1]) + 1
local entry = cjson.decode(ARGV[1])
entry['seq'] = seq
local encoded = cjson.encode(entry)
redis.call('RPUSH', KEYS[1], encoded)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[5])))
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('INCR', KEYS[4])
return {1, encoded}
"""


@dataclass(frozen=True)
class Correction:
    """What a partner says a job shows, and the job as it was when they said it.

    `kind` is SKU, MODEL or NOT_IN_CATALOG; `sku`/`model` are the corrected labels (for SKU the
    model is filled in from the catalog; for NOT_IN_CATALOG `sku` is the new label and `model`
    the one given, else the predicted one)."""

    kind: str
    sku: str | None = None
    model: str | None = None
    note: str | None = None
    # The job, as it was (filled in by the API from the job record).
    job_id: str = ""
    tenant: str = ""
    batch_id: str | None = None
    ref: str | None = None
    model_version: str | None = None
    predicted: dict[str, Any] | None = None  # {"decision", "model", "sku", "confidence"}
    # Set by the store.
    seq: int = 0  # 1 for the first correction of the job, then 2, ...
    at: str = field(default_factory=utc_now)
    at_epoch: float = field(default_factory=time.time)
    digest: str = ""

    @property
    def label(self) -> str | None:
        """The new label of a NOT_IN_CATALOG correction (its `sku`)."""
        return self.sku if self.kind == NOT_IN_CATALOG else None

    def content_digest(self) -> str:
        """What makes two corrections the same request: kind, labels and note."""
        said = json.dumps([self.kind, self.sku, self.model, self.note])
        return hashlib.sha256(said.encode()).hexdigest()[:32]

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Correction:
        """Read the stored form back (unknown fields, from a later version, are ignored)."""
        data = json.loads(raw)
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_public(self) -> dict[str, Any]:
        """The correction as the API and the `job.corrected` event show it."""
        return {
            "kind": self.kind,
            "sku": self.sku,
            "model": self.model,
            "not_in_catalog": self.kind == NOT_IN_CATALOG,
            "label": self.label,
            "note": self.note,
            "seq": self.seq,
            "at": self.at,
            "predicted": self.predicted,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Recorded:
    """What `record` did: the correction that stands, and whether this call added it."""

    correction: Correction
    created: bool


history_key = keys.feedback_history
index_key = keys.feedback_index
count_key = keys.feedback_count
TENANTS = keys.FEEDBACK_TENANTS


class FeedbackStore:
    """Corrections in Redis; the connection is passed in."""

    def __init__(self, conn: redis.Redis, *, ttl: int = DEFAULT_TTL) -> None:
        self.conn = conn
        self.ttl = ttl
        self._record = conn.register_script(_RECORD)

    def record(self, tenant: str, job_id: str, correction: Correction) -> Recorded:
        """Add `correction` to the job's history, unless it is the one standing already."""
        entry = replace(correction, tenant=tenant, job_id=job_id)
        entry = replace(entry, digest=entry.content_digest())
        reply = self._record(
            keys=[history_key(tenant, job_id), index_key(tenant), TENANTS, count_key(tenant)],
            args=[entry.to_json(), entry.digest, entry.at_epoch, job_id, self.ttl, tenant],
        )
        created, raw = reply
        return Recorded(Correction.from_json(raw), bool(int(created)))

    def latest(self, tenant: str, job_id: str) -> Correction | None:
        """The correction that stands for the job, or None."""
        return self.latest_many(tenant, [job_id])[0]

    def latest_many(self, tenant: str, job_ids: list[str]) -> list[Correction | None]:
        """`latest` for several jobs in one round trip, in order."""
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.lindex(history_key(tenant, job_id), -1)
            return [Correction.from_json(raw) if raw else None for raw in pipe.execute()]

    def history(self, tenant: str, job_id: str) -> list[Correction]:
        """Every correction of the job, oldest first."""
        raw: list[Any] = self.conn.lrange(history_key(tenant, job_id), 0, -1)
        return [Correction.from_json(r) for r in raw]

    def since(
        self, tenant: str, since: float | None = None, limit: int | None = None
    ) -> list[Correction]:
        """The standing correction of each job corrected at or after `since` (epoch seconds),
        oldest first; jobs whose history expired are left out."""
        low: Any = "-inf" if since is None else since
        paging: dict[str, Any] = {"start": 0, "num": limit} if limit else {}
        raw: list[Any] = self.conn.zrangebyscore(index_key(tenant), low, "+inf", **paging)
        job_ids = [text(j) for j in raw]
        found: list[Correction] = []
        for start in range(0, len(job_ids), PAGE):
            page = self.latest_many(tenant, job_ids[start : start + PAGE])
            found += [c for c in page if c is not None]
        return found

    def first_announcement(self, tenant: str, job_id: str, seq: int) -> bool:
        """True the first time it is asked for this correction: its metric counts once, even
        when a retry has to send its event again."""
        return bool(
            self.conn.set(keys.feedback_announced(tenant, job_id, seq), 1, nx=True, ex=self.ttl)
        )

    def count(self, tenant: str) -> int:
        """Corrections the tenant recorded so far (repeats of the standing one not counted)."""
        return int(self.conn.get(count_key(tenant)) or 0)

    def tenants(self) -> list[str]:
        """Tenants that have sent at least one correction."""
        return sorted(text(t) for t in self.conn.smembers(TENANTS))


def since_epoch(value: str) -> float:
    """An ISO 8601 date, or date and time (UTC unless it says), as epoch seconds: the `since`
    of `GET /v1/review` and `skuai feedback export`; BadRequest for anything else."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"since: {value!r} is not an ISO 8601 date or time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
