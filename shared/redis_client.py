"""Creating the Redis connection from settings (one place for timeouts and retries)."""

from __future__ import annotations

import redis

from shared.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for the service's data (bytes in, bytes out)."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        socket_timeout=40,  # above the longest long-poll (30 s) so waits are not cut short
        health_check_interval=30,
        retry_on_timeout=True,
    )


def text(value: bytes | str) -> str:
    """A Redis reply value as str (the clients here return bytes)."""
    return value.decode() if isinstance(value, bytes) else value
