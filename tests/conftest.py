"""Session fixtures: a private Redis server, a tiny catalog and a tiny trained cascade, a real
Celery worker process and a real API process — the same parts production runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient

from shared.api_keys import KeyStore
from shared.settings import Settings
from shared.workers import WorkerRegistry
from skuai.redis_server import RedisServer
from skuai.stack import free_port
from tests.receiver import Receiver, receiver

TENANT = "tests"
# The tests' HTTP client; the session's `api_key` fixture puts its key in the headers.
http = requests.Session()

TINY = {"models": 3, "skus_per_model": 2, "images_per_sku": 10, "size": 32, "seed": 3}
START_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server of this test session's own, on a free port, empty."""
    server = RedisServer.start(port=free_port(0), data_dir=tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session's Redis and a session home folder."""
    home = tmp_path_factory.mktemp("home")
    return Settings(
        redis_url=redis_server.url, home=home, registry=home / "registry", allow_private_urls=True
    )


@pytest.fixture(scope="session", autouse=True)
def api_key(settings: Settings) -> str:
    """An API key of the test tenant, already in `http`'s headers."""
    key = KeyStore(redis.Redis.from_url(settings.redis_url)).create(TENANT)
    http.headers["Authorization"] = f"Bearer {key}"
    return key


def authorized(client: FlaskClient, key: str) -> FlaskClient:
    """A Flask test client that sends the API key with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def redis_db(settings: Settings, db: int) -> str:
    """The session Redis URL with another database: a test's own, nobody else's work in it."""
    return settings.redis_url.rsplit("/", 1)[0] + f"/{db}"


def isolated_app(settings: Settings, tenant: str = TENANT) -> tuple[FlaskClient, redis.Redis]:
    """The real Flask app on `settings` (usually a Redis database of the test's own), as a test
    client holding a new key of `tenant`, and a client of that Redis."""
    from web.app import create_app

    conn = redis.Redis.from_url(settings.redis_url)
    return authorized(create_app(settings).test_client(), KeyStore(conn).create(tenant)), conn


@pytest.fixture(scope="session")
def service_env(settings: Settings, api_key: str) -> dict[str, str]:
    """Environment for the processes the tests start."""
    # Small chunks so that a test batch spans several tasks (and several workers).
    extra = {
        "SKUAI_CHUNK_SIZE": "4",
        "SKUAI_API_KEY": api_key,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    }
    return {**os.environ, **settings.env(), **extra}


@pytest.fixture()
def conn(settings: Settings) -> Iterator[redis.Redis]:
    """A client of the session's Redis."""
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic catalog: 3 models x 2 SKUs x 10 images of 32 px."""
    from training.synth import synthesize

    out = tmp_path_factory.mktemp("catalog") / "data"
    synthesize(out, **TINY)
    return out


# The tiny cascade the session trains: quick on 2 cores, and enough for the tiny catalog.
TINY_CASCADE = {
    "input_size": 32,
    "width": 0.0625,
    "weights": "none",
    "batch_size": 16,
    "augment": False,
}


@pytest.fixture(scope="session")
def trained(tiny_catalog: Path, settings: Settings) -> str:
    """A tiny cascade trained in this session, active in the session registry; its version."""
    from training.config import TrainConfig
    from training.registry import Registry
    from training.train import train

    # fp32: the same numbers on every machine; mixed precision has its own tests
    config = TrainConfig(**TINY_CASCADE, epochs=2, precision="fp32")
    return train(tiny_catalog, Registry(settings.registry_dir), config).version


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "skuai", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate: object, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll `predicate()` until true; fail with the process log on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{tail}")


@dataclass
class WorkerProcess:
    """A Celery worker process started by the tests, and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it hangs."""
        _stop(self.process)


def start_worker(
    name: str, env: dict[str, str], settings: Settings, log: Path, version: str | None
) -> WorkerProcess:
    """Start an inference worker and wait until it has loaded `version` (None: until it is up
    with no model, as when none is active)."""
    process = _start(["worker", "--queues", "interactive,inference", "--name", name], env, log)
    workers = WorkerRegistry(redis.Redis.from_url(settings.redis_url))

    def loaded() -> bool:
        return any(
            w.get("model_version") == version and w["name"].startswith(f"{name}@")
            for w in workers.online()
        )

    wait_until(loaded, START_TIMEOUT, f"worker {name} loading its model", log)
    return WorkerProcess(name, process, log)


@pytest.fixture(scope="session")
def inference_worker(
    trained: str,
    service_env: dict[str, str],
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A real Celery worker process serving the tiny cascade, once its model is loaded."""
    log = tmp_path_factory.mktemp("logs") / "worker.log"
    worker = start_worker("test", service_env, settings, log, trained)
    yield worker
    worker.stop()


@dataclass
class ApiServer:
    """An API process started by the tests."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it hangs."""
        _stop(self.process)


def start_api(env: dict[str, str], log: Path) -> ApiServer:
    """A real API process (gunicorn, one worker) on a free port, once it answers /healthz."""
    port = free_port(0)
    process = _start(["api", "--port", str(port), "--workers", "1"], env, log)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, START_TIMEOUT, "the API answering /healthz", log)
    return ApiServer(url, process)


@pytest.fixture(scope="session")
def api_server(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """The session's API process."""
    server = start_api(service_env, tmp_path_factory.mktemp("logs") / "api.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def api_url(api_server: ApiServer) -> str:
    """Base URL of the session's API."""
    return api_server.url


def sample_image(catalog: Path) -> Path:
    """The first image of the catalog."""
    return next(p for p in sorted(catalog.rglob("*.png")))


@pytest.fixture()
def webhook_workers(
    service_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start webhook workers with a given retry schedule; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(schedule: str = "0.5,0.5,0.5,0.5", timeout: int = 2) -> WorkerProcess:
        log = tmp_path / f"webhooks-{len(started)}.log"
        env = {
            **service_env,
            "SKUAI_WEBHOOK_RETRY_SCHEDULE": schedule,
            "SKUAI_WEBHOOK_TIMEOUT": str(timeout),
        }
        name = f"hooks{len(started)}"
        process = _start(
            ["worker", "--queues", "webhooks", "--concurrency", "4", "--name", name], env, log
        )
        worker = WorkerProcess(name, process, log)
        wait_until(
            lambda: f"{name}@" in log.read_text() and "ready" in log.read_text(),
            START_TIMEOUT,
            "the webhook worker starting",
            log,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def bearer(api_key: str | None) -> dict[str, str]:
    """Headers that send `api_key` instead of the test tenant's key (none: keep that one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def deliveries_of(api_url: str, webhook_id: str, api_key: str | None = None) -> list[dict]:
    """A subscription's delivery log through the API, newest first."""
    response = http.get(
        f"{api_url}/v1/webhooks/{webhook_id}/deliveries", headers=bearer(api_key), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


@pytest.fixture()
def hook(api_url: str) -> Iterator[tuple[Receiver, Callable[..., dict]]]:
    """A receiver, and a function subscribing it (or another `url`) for the test tenant, or the
    tenant of `api_key`; subscriptions are removed afterwards."""
    created: list[tuple[str, dict[str, str]]] = []
    with receiver() as rx:

        def subscribe(events: list[str], api_key: str | None = None, url: str = "") -> dict:
            auth = bearer(api_key)
            response = http.post(
                f"{api_url}/v1/webhooks",
                json={"url": url or rx.url, "events": events},
                headers=auth,
                timeout=10,
            )
            assert response.status_code == 201, response.text
            created.append((response.json()["id"], auth))
            return response.json()

        yield rx, subscribe
    for webhook_id, auth in created:
        http.delete(f"{api_url}/v1/webhooks/{webhook_id}", headers=auth, timeout=10)


@pytest.fixture()
def settings_(settings: Settings) -> Settings:
    """The session settings under a name that does not clash with hypothesis' `settings`."""
    return settings
