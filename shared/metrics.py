"""ClusterMetrics: counters and histograms that every worker process (on any host) adds to in
Redis, so they sum exactly across processes; the API exposes them on /metrics at scrape time,
next to gauges read live from Redis (queue depth, age of the oldest message, workers)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from shared import keys
from shared.queues import ALL_QUEUES
from shared.redis_client import text
from shared.workers import WorkerRegistry

PREFIX = f"{keys.NAMESPACE}:metrics"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Softmax confidences crowd near 1 when all is well: finer buckets there show a drift early.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
COUNTERS = {
    "skuai_jobs_finished": ("Jobs (images) by final status", ("status", "kind")),
    "skuai_webhook_deliveries": ("Webhook delivery attempts by outcome", ("outcome",)),
    "skuai_decisions": (
        "Results by open-world decision (sku, model, unknown) and the model version that made them",
        ("decision", "model_version"),
    ),
    "skuai_corrections": (
        "Corrections received (POST .../feedback) by kind and the model version corrected",
        ("kind", "model_version"),
    ),
    "skuai_review_kept": ("Images kept for review by reason", ("reason",)),
}
HISTOGRAMS = {
    "skuai_inference_batch_size": ("Images per forward pass", BATCH_BUCKETS, ()),
    "skuai_inference_stage_seconds": ("Seconds per stage of a chunk", SECONDS_BUCKETS, ("stage",)),
    "skuai_top_confidence": (
        "Confidence of each answer (its SKU's joint probability) by the model version that made it",
        CONFIDENCE_BUCKETS,
        ("model_version",),
    ),
}


def _label_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True)


class ClusterMetrics:
    """Adds to the shared metrics (one Redis round trip per call, or the caller's pipeline)."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def count(self, name: str, amount: int = 1, **labels: str) -> None:
        """Add to a counter of COUNTERS."""
        self.conn.hincrby(f"{PREFIX}:{name}", _label_key(labels), amount)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation in a histogram of HISTOGRAMS."""
        buckets = HISTOGRAMS[name][1]
        key = f"{PREFIX}:{name}:{_label_key(labels)}"
        with self.conn.pipeline(transaction=False) as pipe:
            for bound in buckets:
                if value <= bound:
                    pipe.hincrby(key, repr(float(bound)), 1)
            pipe.hincrby(key, "+Inf", 1)
            pipe.hincrbyfloat(key, "sum", value)
            pipe.sadd(f"{PREFIX}:{name}:labels", _label_key(labels))
            pipe.execute()

    def observe_many(self, name: str, values: Sequence[float], **labels: str) -> None:
        """Record many observations of one label set in a histogram, in one round trip."""
        if not values:
            return
        buckets = HISTOGRAMS[name][1]
        key = f"{PREFIX}:{name}:{_label_key(labels)}"
        with self.conn.pipeline(transaction=False) as pipe:
            for bound in buckets:
                if within := sum(1 for value in values if value <= bound):
                    pipe.hincrby(key, repr(float(bound)), within)
            pipe.hincrby(key, "+Inf", len(values))
            pipe.hincrbyfloat(key, "sum", float(sum(values)))
            pipe.sadd(f"{PREFIX}:{name}:labels", _label_key(labels))
            pipe.execute()


class ClusterCollector(Collector):
    """Reads the shared metrics and live gauges from Redis when Prometheus scrapes."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def collect(self) -> Iterator[Any]:
        yield from self._counters()
        yield from self._histograms()
        yield from self._queues()
        yield from self._workers()
        yield from self._redis_memory()
        pending = GaugeMetricFamily("skuai_pending_images", "Images accepted and not final yet")
        pending.add_metric([], float(self.conn.get(keys.PENDING_IMAGES) or 0))
        yield pending

    def _counters(self) -> Iterator[Any]:
        for name, (doc, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=label_names)
            for raw_labels, value in self.conn.hgetall(f"{PREFIX}:{name}").items():
                labels = json.loads(text(raw_labels))
                family.add_metric([labels.get(n, "") for n in label_names], float(value))
            yield family

    def _histograms(self) -> Iterator[Any]:
        for name, (doc, buckets, label_names) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, doc, labels=label_names)
            for raw_labels in self.conn.smembers(f"{PREFIX}:{name}:labels"):
                label_key = text(raw_labels)
                values = {
                    text(k): float(v)
                    for k, v in self.conn.hgetall(f"{PREFIX}:{name}:{label_key}").items()
                }
                labels = json.loads(label_key)
                family.add_metric(
                    [labels.get(n, "") for n in label_names],
                    _cumulative(buckets, values),
                    sum_value=values.get("sum", 0.0),
                )
            yield family

    def _queues(self) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "skuai_queue_depth", "Messages waiting per queue", labels=("queue",)
        )
        age = GaugeMetricFamily(
            "skuai_queue_oldest_age_seconds",
            "Age of the oldest waiting message per queue",
            labels=("queue",),
        )
        for queue in ALL_QUEUES:
            depth.add_metric([queue], float(self.conn.llen(queue)))
            age.add_metric([queue], _oldest_age(self.conn.lindex(queue, -1)))
        yield depth
        yield age
        unacked = GaugeMetricFamily(
            "skuai_messages_in_flight", "Messages taken by workers and not acknowledged yet"
        )
        unacked.add_metric([], float(self.conn.hlen("unacked")))
        yield unacked

    def _workers(self) -> Iterator[Any]:
        info = GaugeMetricFamily(
            "skuai_worker_model_info",
            "Model version loaded by each inference worker process",
            labels=("worker", "version"),
        )
        for worker in WorkerRegistry(self.conn).online():
            if worker.get("serves_model"):
                info.add_metric([worker["name"], str(worker.get("model_version"))], 1.0)
        yield info

    def _redis_memory(self) -> Iterator[Any]:
        try:
            memory = self.conn.info("memory")
        except redis.ResponseError:  # INFO refused by an ACL: nothing to show, not an error
            return
        for name, field, doc in (
            ("skuai_redis_used_memory_bytes", "used_memory", "Bytes Redis holds"),
            ("skuai_redis_maxmemory_bytes", "maxmemory", "Redis's maxmemory (0: no limit)"),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(memory.get(field, 0)))
            yield gauge


def _cumulative(buckets: Sequence[float], values: dict[str, float]) -> list[tuple[str, float]]:
    return [(repr(float(b)), values.get(repr(float(b)), 0.0)) for b in buckets] + [
        ("+Inf", values.get("+Inf", 0.0))
    ]


def _oldest_age(raw: Any) -> float:
    """Seconds since the message at the head of a queue was sent (0 for an empty queue)."""
    if raw is None:
        return 0.0
    try:
        sent = float(json.loads(raw)["headers"]["skuai_enqueued_at"])
    except (ValueError, KeyError, TypeError):
        return 0.0
    return max(0.0, time.time() - sent)
