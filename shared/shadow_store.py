"""ShadowStore: the challenger the workers score in the shadow of live traffic, and its score.

`skuai models shadow VERSION --sample S` stores the challenger here, so every worker process
sees it between chunks (worker/shadow.py). Each scored job keeps both answers, the champion's
(as stored for the client) and the challenger's (never shown to clients), for SKUAI_RESULT_TTL
under `shadow:job:<id>`, one field per version; each champion/challenger pair counts its
agreement (same SKU, same model, same decision) and its disagreements by SKU. Accuracy on
corrected jobs joins the tenants' standing corrections (shared/feedback_store.py) with those
per-job answers, so a correction that comes after the shadow ran still counts. The retraining
trigger's status (worker/retrain.py) lives here too: the API shows both on GET /v1/models.
No TensorFlow here."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from shared import keys
from shared.decisions import decision_of
from shared.errors import InvalidArgument
from shared.feedback_store import MODEL, NOT_IN_CATALOG, SKU, Correction, FeedbackStore
from shared.redis_client import text

CONFIG = f"{keys.NAMESPACE}:shadow:config"
RETRAIN_STATUS = f"{keys.NAMESPACE}:retrain:status"
DEFAULT_SAMPLE = 0.25
MIN_CORRECTED = 5  # corrected jobs both versions answered, below which activation is not judged
TOP_DISAGREEMENTS = 20
PAGE = 500
ARROW = "\u2192"  # champion sku -> challenger sku, in a disagreement's field name


@dataclass(frozen=True)
class ShadowConfig:
    """The challenger and the share of live images it sees."""

    version: str
    sample: float
    since: float  # epoch seconds when it was put in the shadow

    def to_public(self) -> dict[str, Any]:
        """As the API and `skuai models list` show it."""
        return asdict(self)


def in_sample(job_id: str, share: float) -> bool:
    """Whether the job is in the shadow's sample: fixed by its id (a chunk run twice samples
    the same jobs), drawn apart from the review queue's sample."""
    digest = hashlib.sha256(f"shadow:{job_id}".encode()).hexdigest()[:8]
    return int(digest, 16) / 2**32 < share


def answer_of(result: dict[str, Any]) -> dict[str, str]:
    """What a result says, for comparing two versions: its SKU, model and decision."""
    return {
        "sku": str((result.get("sku") or {}).get("label")),
        "model": str((result.get("model") or {}).get("label")),
        "decision": decision_of(result),
    }


def is_correct(answer: dict[str, str], correction: Correction) -> bool:
    """Whether an answer agrees with a correction: the corrected SKU answered as a SKU; the
    corrected model (any decision but unknown); for something not in the catalog, any decision
    but a confident SKU (the version flagged it)."""
    if correction.kind == SKU:
        return answer["decision"] == "sku" and answer["sku"] == correction.sku
    if correction.kind == MODEL:
        return answer["decision"] != "unknown" and answer["model"] == correction.model
    if correction.kind == NOT_IN_CATALOG:
        return answer["decision"] != "sku"
    return False


def job_key(job_id: str) -> str:
    """Hash of a scored job's answers, one field per version (JSON)."""
    return f"{keys.NAMESPACE}:shadow:job:{job_id}"


def stats_key(champion: str, challenger: str) -> str:
    """Hash of a pair's counts: scored, same_sku, same_model, same_decision."""
    return f"{keys.NAMESPACE}:shadow:stats:{champion}:{challenger}"


def disagreements_key(champion: str, challenger: str) -> str:
    """Hash of a pair's disagreements: 'champion sku -> challenger sku' to a count."""
    return f"{keys.NAMESPACE}:shadow:disagree:{champion}:{challenger}"


@dataclass(frozen=True)
class Scored:
    """One job both versions answered."""

    job_id: str
    champion: dict[str, str]
    challenger: dict[str, str]


class ShadowStore:
    """The shadow's configuration and score in Redis; the connection is passed in."""

    def __init__(self, conn: redis.Redis, *, ttl: int) -> None:
        self.conn = conn
        self.ttl = ttl  # of per-job answers: at least the results' own

    def config(self) -> ShadowConfig | None:
        """The challenger now in the shadow, or None."""
        raw = self.conn.get(CONFIG)
        return ShadowConfig(**json.loads(raw)) if raw else None

    def start(self, version: str, sample: float = DEFAULT_SAMPLE) -> ShadowConfig:
        """Put `version` in the shadow of `sample` of live images (replacing any challenger)."""
        if not 0 < sample <= 1:
            raise InvalidArgument(f"the sample must be in (0, 1], not {sample:g}")
        config = ShadowConfig(version, sample, time.time())
        self.conn.set(CONFIG, json.dumps(asdict(config)))
        return config

    def stop(self) -> ShadowConfig | None:
        """Take the challenger out of the shadow (its score stays); the one that was, if any."""
        was = self.config()
        self.conn.delete(CONFIG)
        return was

    def record(self, champion: str, challenger: str, scored: list[Scored]) -> None:
        """Keep both answers of each job and count the pair's agreement, in one round trip."""
        if not scored:
            return
        counts = {"scored": 0, "same_sku": 0, "same_model": 0, "same_decision": 0}
        with self.conn.pipeline(transaction=False) as pipe:
            for one in scored:
                pipe.hset(
                    job_key(one.job_id),
                    mapping={
                        champion: json.dumps(one.champion),
                        challenger: json.dumps(one.challenger),
                    },
                )
                pipe.expire(job_key(one.job_id), self.ttl)
                counts["scored"] += 1
                for part in ("sku", "model", "decision"):
                    counts[f"same_{part}"] += one.champion[part] == one.challenger[part]
                if one.champion["sku"] != one.challenger["sku"]:
                    field = f"{one.champion['sku']}{ARROW}{one.challenger['sku']}"
                    pipe.hincrby(disagreements_key(champion, challenger), field, 1)
            for name, count in counts.items():
                pipe.hincrby(stats_key(champion, challenger), name, count)
            pipe.execute()

    def compare(self, champion: str, challenger: str, feedback: FeedbackStore) -> dict[str, Any]:
        """The pair's agreement on live jobs, its disagreements by SKU (most frequent first), and
        both versions' accuracy on the corrected jobs both answered."""
        stats = {
            text(k): int(v) for k, v in self.conn.hgetall(stats_key(champion, challenger)).items()
        }
        scored = stats.get("scored", 0)
        raw = self.conn.hgetall(disagreements_key(champion, challenger))
        pairs = sorted(((text(k), int(v)) for k, v in raw.items()), key=lambda kv: (-kv[1], kv[0]))
        return {
            "champion": champion,
            "challenger": challenger,
            "scored": scored,
            "agreement": {
                part: (stats.get(f"same_{part}", 0) / scored if scored else None)
                for part in ("sku", "model", "decision")
            },
            "disagreements": [
                {
                    "champion_sku": key.partition(ARROW)[0],
                    "challenger_sku": key.partition(ARROW)[2],
                    "count": count,
                }
                for key, count in pairs[:TOP_DISAGREEMENTS]
            ],
            "corrected": self.corrected_accuracy(champion, challenger, feedback),
        }

    def corrected_accuracy(
        self, first: str, second: str, feedback: FeedbackStore
    ) -> dict[str, Any]:
        """How often each version agreed with the standing correction, over the corrected jobs
        both answered (as champion or as challenger, either way round)."""
        right = {first: 0, second: 0}
        jobs = 0
        for tenant in feedback.tenants():
            corrections = feedback.since(tenant)
            for start in range(0, len(corrections), PAGE):
                page = corrections[start : start + PAGE]
                with self.conn.pipeline(transaction=False) as pipe:
                    for correction in page:
                        pipe.hmget(job_key(correction.job_id), first, second)
                    answers = pipe.execute()
                for correction, (a, b) in zip(page, answers, strict=True):
                    if a is None or b is None:
                        continue
                    jobs += 1
                    right[first] += is_correct(json.loads(a), correction)
                    right[second] += is_correct(json.loads(b), correction)
        return {
            "jobs": jobs,
            "correct": right,
            "accuracy": {v: (n / jobs if jobs else None) for v, n in right.items()},
        }

    def retrain_status(self) -> dict[str, Any] | None:
        """The last retraining trigger's run (worker/retrain.py), or None if none ran."""
        raw = self.conn.get(RETRAIN_STATUS)
        return json.loads(raw) if raw else None

    def set_retrain_status(self, status: dict[str, Any]) -> None:
        """Record the retraining trigger's state (kept until the next run replaces it)."""
        self.conn.set(RETRAIN_STATUS, json.dumps(status))


def activation_verdict(
    store: ShadowStore, active: str, candidate: str, feedback: FeedbackStore
) -> tuple[bool, str]:
    """Whether `candidate` may replace `active` on the corrected jobs' evidence, and why (one
    line): refused when it was right less often than `active` on at least MIN_CORRECTED
    corrected jobs both answered."""
    found = store.corrected_accuracy(active, candidate, feedback)
    jobs = found["jobs"]
    if jobs < MIN_CORRECTED:
        return True, (
            f"not enough corrected jobs to compare {candidate} with {active} "
            f"({jobs} answered by both, {MIN_CORRECTED} needed)"
        )
    ours, theirs = found["correct"][candidate], found["correct"][active]
    line = f"{candidate} was right on {ours}/{jobs} corrected jobs, {active} (active) on {theirs}"
    return ours >= theirs, line
