"""Names of every Redis key and channel the service uses, so they are spelled in one place."""

from __future__ import annotations

NAMESPACE = "skuai"


def job(job_id: str) -> str:
    """Hash holding one job's fields."""
    return f"{NAMESPACE}:job:{job_id}"


def image(job_id: str) -> str:
    """The uploaded image bytes of one job, kept until it is classified (or its TTL ends)."""
    return f"{NAMESPACE}:image:{job_id}"


def job_done_channel(job_id: str) -> str:
    """Pub/sub channel announcing that a job reached a final status (wakes long-polls)."""
    return f"{NAMESPACE}:done:{job_id}"


def worker(name: str) -> str:
    """Heartbeat of one inference worker process, with the model version it serves."""
    return f"{NAMESPACE}:worker:{name}"


WORKERS = f"{NAMESPACE}:workers"  # sorted set: worker name -> when its heartbeat lapses


def batch(batch_id: str) -> str:
    """Hash holding one batch's fields and its exact per-status counts."""
    return f"{NAMESPACE}:batch:{batch_id}"


def batch_jobs(batch_id: str) -> str:
    """List of the batch's job ids in upload order (the results cursor is an index into it)."""
    return f"{NAMESPACE}:batch:{batch_id}:jobs"


def batch_decided(batch_id: str, decision: str) -> str:
    """Sorted set of the batch's succeeded jobs with one decision, scored by upload position
    (the `?decision=` filter pages through it; store_scripts keeps it)."""
    return f"{NAMESPACE}:batch:{batch_id}:decided:{decision}"


def batch_idempotency(batch_id: str) -> str:
    """The Idempotency-Key record an unsealed batch's upload reserved (freed if it is abandoned)."""
    return f"{NAMESPACE}:batch:{batch_id}:idempotency"


def batch_digests(batch_id: str) -> str:
    """Hash: image digest -> the first job of the batch with those bytes (duplicates reuse it)."""
    return f"{NAMESPACE}:batch:{batch_id}:digests"


def idempotency(tenant: str, key_digest: str) -> str:
    """The batch created for an Idempotency-Key."""
    return f"{NAMESPACE}:idempotency:{tenant}:{key_digest}"


def webhook(webhook_id: str) -> str:
    """Hash of one webhook subscription."""
    return f"{NAMESPACE}:webhook:{webhook_id}"


def tenant_webhooks(tenant: str) -> str:
    """Set of a tenant's subscription ids."""
    return f"{NAMESPACE}:tenant:{tenant}:webhooks"


def tenant_secret(tenant: str) -> str:
    """The tenant's signing secret for job and batch `callback_url`s."""
    return f"{NAMESPACE}:tenant:{tenant}:secret"


def delivery(delivery_id: str) -> str:
    """Hash of one webhook delivery (one event to one URL, with all its attempts)."""
    return f"{NAMESPACE}:delivery:{delivery_id}"


def delivery_attempts(delivery_id: str) -> str:
    """List of a delivery's attempts (JSON), oldest first."""
    return f"{NAMESPACE}:delivery:{delivery_id}:attempts"


def webhook_deliveries(webhook_id: str) -> str:
    """A subscription's delivery ids, newest first (the delivery log)."""
    return f"{NAMESPACE}:webhook:{webhook_id}:deliveries"


DELIVERIES_DUE = f"{NAMESPACE}:deliveries:due"  # sorted set: delivery id -> when to (re)try


def event(event_id: str) -> str:
    """One recorded event (JSON) waiting to be fanned out into deliveries."""
    return f"{NAMESPACE}:event:{event_id}"


EVENTS_DUE = f"{NAMESPACE}:events:due"  # sorted set: event id -> when to (re)try its fan-out


def lane(lane_id: str) -> str:
    """Hash of one endpoint lane's health: `failing` and `blocked_until`."""
    return f"{NAMESPACE}:lane:{lane_id}"


def lane_slots(lane_id: str) -> str:
    """Sorted set of the lane's attempts in flight: delivery id -> when its slot lapses."""
    return f"{NAMESPACE}:lane:{lane_id}:slots"


def lane_waiting(lane_id: str) -> str:
    """Sorted set of the lane's deliveries waiting for a slot, oldest delivery first."""
    return f"{NAMESPACE}:lane:{lane_id}:waiting"


LANES_WAITING = f"{NAMESPACE}:lanes:waiting"  # set of lanes with deliveries waiting


def api_key(key_digest: str) -> str:
    """Hash of one API key (stored by its SHA-256, never in clear)."""
    return f"{NAMESPACE}:apikey:{key_digest}"


def tenant_keys(tenant: str) -> str:
    """Set of a tenant's key digests."""
    return f"{NAMESPACE}:tenant:{tenant}:keys"


def rate_bucket(key_digest: str) -> str:
    """Token bucket of one API key (rate limiting)."""
    return f"{NAMESPACE}:rate:{key_digest}"


def long_polls(key_digest: str) -> str:
    """Sorted set of one API key's long polls in progress: slot -> when it lapses."""
    return f"{NAMESPACE}:waits:{key_digest}"


TENANTS = f"{NAMESPACE}:tenants"  # set of tenant names
PENDING_IMAGES = f"{NAMESPACE}:pending"  # jobs accepted and not final yet (backpressure)
# Queue places reserved by uploads in progress (shared/admission.py): holder -> places not yet
# stored as jobs, and holder -> when the reservation lapses (an upload whose process died).
QUEUE_RESERVATIONS = f"{NAMESPACE}:reservations"
QUEUE_RESERVATIONS_DUE = f"{NAMESPACE}:reservations:due"
# Sorted sets for the sweeper, so that each pass reads only the oldest few (worker/sweeper.py):
# batches still uploading -> when their upload last stored an image; sealed batches not
# completed yet -> when they last made progress.
UNSEALED_BATCHES = f"{NAMESPACE}:batches:unsealed"
RUNNING_BATCHES = f"{NAMESPACE}:batches:running"
# Batches final and not archived yet -> when they ended (store_scripts adds them in the step that
# completes them; shared/result_archive.py removes them once their results are in the blob store).
UNARCHIVED_BATCHES = f"{NAMESPACE}:batches:unarchived"
# The set that held both before, drained into them by the sweeper a page at a time.
OPEN_BATCHES = f"{NAMESPACE}:batches:open"


def review_settings(tenant: str) -> str:
    """A tenant's review opt-in (JSON; shared/review_store.py)."""
    return f"{NAMESPACE}:review:{tenant}:settings"


def review_items(tenant: str) -> str:
    """Hash: job id -> the tenant's kept review item (JSON)."""
    return f"{NAMESPACE}:review:{tenant}:items"


def review_order(tenant: str) -> str:
    """Sorted set: job id -> when its image was kept (listing and eviction order)."""
    return f"{NAMESPACE}:review:{tenant}:order"


def review_pending(tenant: str) -> str:
    """Sorted set: job id -> until when its image is held for a correction (not listed)."""
    return f"{NAMESPACE}:review:{tenant}:pending"


def review_bytes(tenant: str) -> str:
    """Bytes of review images kept for the tenant in total."""
    return f"{NAMESPACE}:review:{tenant}:bytes"


REVIEW_OPTED_IN = f"{NAMESPACE}:review:tenants"  # tenants keeping anything: workers check it first
REVIEW_KEEPING = (
    f"{NAMESPACE}:review:keeping"  # tenants with kept images (the sweeper expires them)
)


def feedback_history(tenant: str, job_id: str) -> str:
    """List of a job's corrections (JSON), oldest first (shared/feedback_store.py)."""
    return f"{NAMESPACE}:feedback:{tenant}:job:{job_id}"


def feedback_index(tenant: str) -> str:
    """Sorted set of a tenant's corrected jobs, scored by when their last correction came."""
    return f"{NAMESPACE}:feedback:{tenant}:jobs"


def feedback_count(tenant: str) -> str:
    """How many corrections the tenant recorded, ever (the retraining trigger reads it)."""
    return f"{NAMESPACE}:feedback:{tenant}:count"


def feedback_announced(tenant: str, job_id: str, seq: int) -> str:
    """Set once a correction's metric is counted and its event recorded (a retry re-sends)."""
    return f"{NAMESPACE}:feedback:{tenant}:announced:{job_id}:{seq}"


FEEDBACK_TENANTS = f"{NAMESPACE}:feedback:tenants"  # tenants that sent a correction
