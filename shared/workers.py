"""WorkerRegistry: inference workers announce themselves and the model they serve, with a TTL,
so that `/readyz` and `/v1/models` can tell which workers and versions are live."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from shared import keys

HEARTBEAT_TTL = 15  # seconds; a worker that stops beating drops out of the list


class WorkerRegistry:
    """Heartbeats of inference worker processes in Redis."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def announce(self, name: str, info: dict[str, Any], ttl: int = HEARTBEAT_TTL) -> None:
        """Record (or refresh) that worker `name` is up with `info` (model version, pid...)."""
        now = time.time()
        payload = {**info, "name": name, "seen_at": now}
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.set(keys.worker(name), json.dumps(payload), ex=ttl)
            pipe.zadd(keys.WORKERS, {name: now + ttl})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now)  # those that stopped beating
            pipe.execute()

    def withdraw(self, name: str) -> None:
        """Remove a worker's heartbeat when it shuts down cleanly."""
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.delete(keys.worker(name))
            pipe.zrem(keys.WORKERS, name)
            pipe.execute()

    def online(self) -> list[dict[str, Any]]:
        """Every worker whose heartbeat has not expired (two round trips, whatever else Redis
        holds: readiness must not scan the keyspace)."""
        found: list[Any] = self.conn.zrangebyscore(keys.WORKERS, time.time(), "+inf")
        names = [n.decode() for n in found]
        if not names:
            return []
        values = self.conn.mget([keys.worker(n) for n in names])
        return [json.loads(value) for value in values if value is not None]
