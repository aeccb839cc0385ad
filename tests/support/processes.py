"""`skuai` processes the tests start: commands run to the end, Celery workers and API servers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import redis

from shared.settings import Settings
from shared.workers import WorkerRegistry
from skuai.stack import free_port
from tests.support.polling import answers, wait_until

START_TIMEOUT = 120.0


def run_skuai(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `skuai ARGS` to the end; its exit status and captured text output."""
    return subprocess.run(
        [sys.executable, "-m", "skuai", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def start_skuai(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `skuai ARGS` in a session of its own, its output going to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "skuai", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class WorkerProcess:
    """A Celery worker process started by the tests, and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it hangs."""
        stop_process(self.process)


def start_worker(
    name: str, env: dict[str, str], settings: Settings, log: Path, version: str | None
) -> WorkerProcess:
    """Start an inference worker and wait until it has loaded `version` (None: until it is up
    with no model, as when none is active)."""
    args = ["worker", "--queues", "interactive,inference", "--name", name]
    process = start_skuai(args, env, log)
    workers = WorkerRegistry(redis.Redis.from_url(settings.redis_url))

    def loaded() -> bool:
        return any(
            w.get("model_version") == version and w["name"].startswith(f"{name}@")
            for w in workers.online()
        )

    worker = WorkerProcess(name, process, log)
    try:
        wait_until(loaded, START_TIMEOUT, f"worker {name} loading its model", log)
    except BaseException:  # pytest.fail is one: nothing is left running behind a failed start
        worker.stop()
        raise
    return worker


def start_webhook_worker(name: str, env: dict[str, str], log: Path) -> WorkerProcess:
    """Start a webhook worker (4 threads) and wait until Celery says it is ready."""
    args = ["worker", "--queues", "webhooks", "--concurrency", "4", "--name", name]
    worker = WorkerProcess(name, start_skuai(args, env, log), log)
    try:
        wait_until(
            lambda: f"{name}@" in log.read_text() and "ready" in log.read_text(),
            START_TIMEOUT,
            "the webhook worker starting",
            log,
        )
    except BaseException:  # nothing is left running behind a failed start
        worker.stop()
        raise
    return worker


@dataclass
class ApiServer:
    """An API process started by the tests."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        stop_process(self.process)


def launch_api(
    env: dict[str, str], log: Path, *, host: str = "127.0.0.1", workers: int = 1
) -> ApiServer:
    """Start a real API process (gunicorn) on a free port, without waiting for it."""
    port = free_port(0)
    args = ["api", "--host", host, "--port", str(port), "--workers", str(workers)]
    return ApiServer(f"http://{host}:{port}", start_skuai(args, env, log))


def wait_healthy(api: ApiServer, log: Path) -> None:
    """Wait until `api` answers /healthz."""
    # Refused until gunicorn binds; after that a request waits for a worker to boot rather than
    # giving up first and being served (and counted) anyway.
    wait_until(
        lambda: answers(f"{api.url}/healthz", timeout=30),
        START_TIMEOUT,
        "the API answering /healthz",
        log,
    )


def start_api(
    env: dict[str, str], log: Path, *, host: str = "127.0.0.1", workers: int = 1
) -> ApiServer:
    """A real API process (gunicorn) on a free port, once it answers /healthz."""
    api = launch_api(env, log, host=host, workers=workers)
    try:
        wait_healthy(api, log)
    except BaseException:  # nothing is left running behind a failed start
        api.stop()
        raise
    return api
