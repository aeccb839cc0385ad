"""Finding Redis, or starting an embedded one with AOF under SKUAI_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from shared.errors import ConfigError
from shared.settings import Settings
from skuai.redis_server import ensure_redis, reachable
from skuai.stack import free_port


def test_reachable_redis_is_used_as_is(settings: Settings) -> None:
    assert ensure_redis(settings.redis_url, Path("/nonexistent")) is None


def test_unreachable_local_url_starts_an_embedded_server_with_aof(tmp_path: Path) -> None:
    port = free_port(0)
    url = f"redis://127.0.0.1:{port}/3"
    assert not reachable(url)
    server = ensure_redis(url, tmp_path / "redis")
    assert server is not None
    try:
        assert server.url == url
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert Path(client.config_get("dir")["dir"]) == tmp_path / "redis"
        client.close()
    finally:
        server.stop()
    assert not reachable(url)
    assert any((tmp_path / "redis").rglob("*.aof")), "AOF files are kept under the data dir"


def test_unreachable_url_of_another_host_is_a_clear_error() -> None:
    # 127.0.0.2 is loopback but not one of the hosts we would start a server for.
    url = f"redis://127.0.0.2:{free_port(0)}/0"
    with pytest.raises(ConfigError, match=f"Redis at {url} is unreachable"):
        ensure_redis(url, Path("/tmp/unused"))
