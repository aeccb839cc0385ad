"""Creating the Redis connection from settings (one place for timeouts and retries).

Every command gets `SKUAI_REDIS_TIMEOUT` to connect and to answer, and is never retried after a
timeout: a frozen Redis (SIGSTOP, a stalled disk, a full server still accepting connections)
turns into a 503 within about that long instead of hanging the request. Nothing here blocks on
purpose: long polls wait on pub/sub with `get_message(timeout=...)`, which waits on the socket
with its own timeout and then reads with this one. Kombu's BRPOP, the one blocking command, runs
on the broker's own connections, whose read timeout adds `BRPOP_SECONDS` (shared/queues.py)."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.settings import Settings

HEALTH_CHECK_SECONDS = 30  # an idle pooled connection is PINGed before reuse after this long


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for the service's data (bytes in, bytes out)."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        # One immediate retry on a dropped connection (Redis restarted under a pooled socket);
        # none on a timeout, which would only double the wait on a frozen server.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def text(value: bytes | str) -> str:
    """A Redis reply value as str (the clients here return bytes)."""
    return value.decode() if isinstance(value, bytes) else value
