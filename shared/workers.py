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
        payload = {**info, "name": name, "seen_at": time.time()}
        self.conn.set(keys.worker(name), json.dumps(payload), ex=ttl)

    def withdraw(self, name: str) -> None:
        """Remove a worker's heartbeat when it shuts down cleanly."""
        self.conn.delete(keys.worker(name))

    def online(self) -> list[dict[str, Any]]:
        """Every worker whose heartbeat has not expired."""
        names = list(self.conn.scan_iter(match=keys.WORKER_PATTERN, count=100))
        if not names:
            return []
        values = self.conn.mget(names)
        return [json.loads(value) for value in values if value is not None]
