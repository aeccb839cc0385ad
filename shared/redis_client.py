"""Creating the Redis connection from settings (one place for timeouts and retries), plain or
through Redis Sentinel, and the Celery broker's URL and options for the same Redis.

Every command gets `SKUAI_REDIS_TIMEOUT` to connect and to answer, and is never retried after a
timeout: a frozen Redis (SIGSTOP, a stalled disk, a full server still accepting connections)
turns into a 503 within about that long instead of hanging the request. Nothing here blocks on
purpose: long polls wait on pub/sub with `get_message(timeout=...)`, which waits on the socket
with its own timeout and then reads with this one. Kombu's BRPOP, the one blocking command, runs
on the broker's own connections, whose read timeout adds `BRPOP_SECONDS` (shared/queues.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from shared.redis_url import is_sentinel, parse_sentinel
from shared.settings import Settings

HEALTH_CHECK_SECONDS = 30  # an idle pooled connection is PINGed before reuse after this long
# How long a worker's command waits for Sentinel to promote a new primary (down-after-milliseconds
# plus the election must fit in it): a chunk in flight then finishes on the new primary rather
# than waiting SKUAI_VISIBILITY_TIMEOUT for its message to be handed out again.
FAILOVER_WAIT_SECONDS = 60.0
FAILOVER_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)


def connect(settings: Settings, *, ride_out_failover: bool = False) -> redis.Redis:
    """A Redis client for the service's data (bytes in, bytes out); `ride_out_failover`: for
    workers, whose commands on a `sentinel://` URL wait for a new primary instead of failing."""
    return client_for(
        settings.redis_url, timeout=settings.redis_timeout, ride_out_failover=ride_out_failover
    )


def client_for(url: str, *, timeout: float, ride_out_failover: bool = False) -> redis.Redis:
    """A client of `url` (plain or `sentinel://`) with these timeouts and retry policy.

    Through Sentinel, the client asks the sentinels where the primary is whenever it opens a
    connection; a connection to a primary that was demoted answers READONLY, which redis-py
    turns into a ConnectionError and a new question to the sentinels. While the failover runs
    (the old primary gone, no new one elected yet) commands fail as on a Redis that is down, so
    the API answers 503, unless `ride_out_failover` (workers) makes them wait for the new one."""
    options: dict[str, Any] = dict(
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=HEALTH_CHECK_SECONDS,
        # One immediate retry on a dropped connection (Redis restarted under a pooled socket);
        # none on a timeout, which would only double the wait on a frozen server.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    if ride_out_failover:
        options["retry"] = RetryUntil(FAILOVER_WAIT_SECONDS)
    parsed = parse_sentinel(url)
    sentinels = Sentinel(list(parsed.sentinels), sentinel_kwargs=_sentinel_kwargs(url, timeout))
    return sentinels.master_for(
        parsed.master,
        connection_class=RediscoveringConnection,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )


class RediscoveringConnection(SentinelManagedConnection):
    """A connection to the primary that asks the sentinels where it is on every reconnect.

    redis-py's own reconnects inside a command's retries (`send_packed_command`) dial the
    address the connection had, the dead primary, until the retries run out, even once a
    replica was promoted (redis/redis-py#3874): a worker riding out a failover would wait its
    whole FAILOVER_WAIT_SECONDS and fail anyway."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Connect to the primary the sentinels name now (if not connected)."""
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


class RetryUntil(Retry):
    """Retries a ConnectionError with FAILOVER_BACKOFF until `seconds` have passed since the
    call began. A count of retries would not bound the wait: redis-py retries a command with
    the same policy it uses to reconnect inside that command, so counts multiply; deadlines
    do not (the outer call gives up as soon as the inner one does)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(FAILOVER_BACKOFF, -1, (redis.ConnectionError,))
        self.seconds = seconds

    def call_with_retry(
        self,
        do: Callable[[], Any],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        """`do()`, retried as Retry does, until the deadline (then its last error)."""
        deadline = time.monotonic() + self.seconds

        def fail_or_give_up(error: Exception, *count: int) -> None:
            fail(error, *count)
            if time.monotonic() >= deadline:
                raise error

        return super().call_with_retry(do, fail_or_give_up, is_retryable, with_failure_count)


def broker_url(settings: Settings) -> str:
    """The Celery broker URL of these settings (Kombu writes sentinels its own way)."""
    if is_sentinel(settings.redis_url):
        return parse_sentinel(settings.redis_url).kombu_url()
    return settings.redis_url


def sentinel_transport_options(settings: Settings) -> dict[str, Any]:
    """Kombu's transport options for a `sentinel://` SKUAI_REDIS_URL (none for a plain one):
    the master's name, and how to reach the sentinels."""
    if not is_sentinel(settings.redis_url):
        return {}
    parsed = parse_sentinel(settings.redis_url)
    return {
        "master_name": parsed.master,
        "sentinel_kwargs": _sentinel_kwargs(settings.redis_url, settings.redis_timeout),
    }


def _sentinel_kwargs(url: str, timeout: float) -> dict[str, Any]:
    # Never retried: the client asks the next sentinel instead. redis-py's default would retry
    # a sentinel that is down 3 times with seconds of backoff, on every question about the primary.
    return {**parse_sentinel(url).sentinel_kwargs(timeout), "retry": Retry(NoBackoff(), 0)}


def text(value: bytes | str) -> str:
    """A Redis reply value as str (the clients here return bytes)."""
    return value.decode() if isinstance(value, bytes) else value
