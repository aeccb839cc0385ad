"""SkuShares: each tenant's latest predicted SKUs (a sliding window of the last
SKUAI_SKU_SHARE_WINDOW answers), kept in Redis by every worker process, and the share of its
SKUAI_SKU_SHARE_TOP most predicted SKUs that the API exports on /metrics. A catalog whose
traffic drifts shows here first: one SKU taking over, or the usual ones fading.

The window is a list per tenant (newest first) and a hash of counts that moves with it, both
changed by one script, so a scrape reads a few counts per tenant, never the window itself."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.keys import NAMESPACE
from shared.redis_client import text

PREFIX = f"{NAMESPACE}:metrics:sku_share"
TENANTS = f"{PREFIX}:tenants"
# A tenant that sends nothing for this long drops off /metrics (a deleted tenant, a trial).
IDLE_SECONDS = 7 * 24 * 3600

# KEYS[1] the window (list), KEYS[2] its counts (hash); ARGV[1] window size, ARGV[2] idle
# seconds, ARGV[3..] the SKUs predicted, oldest first.
_RECORD = """
local window, idle = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV do
  redis.call('LPUSH', KEYS[1], ARGV[i])
  redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
end
-- a smaller window setting shrinks the window here too
while redis.call('LLEN', KEYS[1]) > window do
  local old = redis.call('RPOP', KEYS[1])
  if redis.call('HINCRBY', KEYS[2], old, -1) <= 0 then redis.call('HDEL', KEYS[2], old) end
end
redis.call('EXPIRE', KEYS[1], idle)
redis.call('EXPIRE', KEYS[2], idle)
"""


def _window(tenant: str) -> str:
    return f"{PREFIX}:{tenant}:window"


def _counts(tenant: str) -> str:
    return f"{PREFIX}:{tenant}:counts"


class SkuShares:
    """Adds predictions to the tenants' windows (one round trip per chunk)."""

    def __init__(self, conn: redis.Redis, window: int) -> None:
        self.conn = conn
        self.window = window
        self._record = conn.register_script(_RECORD)

    def record(self, predictions: Iterable[tuple[str, str]]) -> None:
        """Add (tenant, sku) pairs, in the order they were predicted."""
        by_tenant: dict[str, list[str]] = {}
        for tenant, sku in predictions:
            by_tenant.setdefault(tenant, []).append(sku)
        if not by_tenant:
            return
        with self.conn.pipeline(transaction=False) as pipe:
            for tenant, skus in by_tenant.items():
                pipe.sadd(TENANTS, tenant)
                self._record(
                    keys=[_window(tenant), _counts(tenant)],
                    args=[self.window, IDLE_SECONDS, *skus],
                    client=pipe,
                )
            pipe.execute()

    def shares(self, top: int) -> dict[str, tuple[int, list[tuple[str, float]]]]:
        """Per tenant: the predictions in its window, and its `top` SKUs with their shares."""
        tenants = sorted(text(t) for t in self.conn.smembers(TENANTS))
        with self.conn.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.hgetall(_counts(tenant))
            counts = pipe.execute()
        found: dict[str, tuple[int, list[tuple[str, float]]]] = {}
        for tenant, raw in zip(tenants, counts, strict=True):
            per_sku = {text(k): int(v) for k, v in raw.items() if int(v) > 0}
            if not per_sku:  # idle past IDLE_SECONDS: its window expired
                self.conn.srem(TENANTS, tenant)
                continue
            total = sum(per_sku.values())
            ranked = sorted(per_sku.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
            found[tenant] = (total, [(sku, n / total) for sku, n in ranked])
        return found


class SkuShareCollector(Collector):
    """The shares as gauges, read from Redis when Prometheus scrapes; `top` bounds the labels."""

    def __init__(self, conn: redis.Redis, top: int) -> None:
        self.shares = SkuShares(conn, window=0)  # reads only: the window size is the writers'
        self.top = top

    def collect(self) -> Iterator[Any]:
        share = GaugeMetricFamily(
            "skuai_sku_share",
            "Share of each of a tenant's most predicted SKUs in its latest predictions",
            labels=("tenant", "sku"),
        )
        size = GaugeMetricFamily(
            "skuai_sku_share_predictions",
            "Predictions in a tenant's window of latest predictions (the shares' denominator)",
            labels=("tenant",),
        )
        for tenant, (total, ranked) in self.shares.shares(self.top).items():
            size.add_metric([tenant], float(total))
            for sku, fraction in ranked:
                share.add_metric([tenant, sku], fraction)
        yield share
        yield size
