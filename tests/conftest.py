"""Session fixtures: a private Redis server (and a database of their own for the tests that need
one), a tiny catalog and a tiny trained cascade, a real Celery worker process and a real API
process — the same parts production runs. Helpers live in `tests/support/`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from shared.api_keys import KeyStore
from shared.settings import Settings
from skuai.redis_server import RedisServer
from skuai.stack import free_port
from tests.receiver import Receiver, receiver
from tests.support.http import TENANT, bearer, http
from tests.support.isolation import OwnWorkers
from tests.support.processes import (
    ApiServer,
    WorkerProcess,
    start_api,
    start_webhook_worker,
    start_worker,
)
from tests.support.redis_databases import RedisDatabases
from tests.support.s3_server import S3Server

TINY = {"models": 3, "skus_per_model": 2, "images_per_sku": 10, "size": 32, "seed": 3}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server of this test session's own, on a free port, empty."""
    server = RedisServer.start(port=free_port(0), data_dir=tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS) of this session's own, on free loopback ports, with a bucket."""
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session's Redis and a session home folder."""
    home = tmp_path_factory.mktemp("home")
    return Settings(
        redis_url=redis_server.url, home=home, registry=home / "registry", allow_private_urls=True
    )


@pytest.fixture(scope="session")
def redis_databases(settings: Settings) -> RedisDatabases:
    """The session Redis's other databases, lent to one test (or module) at a time."""
    return RedisDatabases(settings.redis_url)


@pytest.fixture()
def own_db(settings: Settings, redis_databases: RedisDatabases) -> Iterator[Settings]:
    """The session settings on a Redis database of this test's own: nobody else's work in it,
    and empty before and after."""
    with redis_databases.lend() as url:
        yield replace(settings, redis_url=url)


@pytest.fixture()
def own_workers(
    own_db: Settings, service_env: dict[str, str], tmp_path: Path
) -> Iterator[OwnWorkers]:
    """Starts inference workers on a test's own database (logs in `tmp_path`); stops them after,
    before the database is emptied and lent again."""
    workers = OwnWorkers(service_env, tmp_path)
    yield workers
    workers.stop_all()


@pytest.fixture(scope="session", autouse=True)
def api_key(settings: Settings) -> str:
    """An API key of the test tenant, already in `http`'s headers."""
    key = KeyStore(redis.Redis.from_url(settings.redis_url)).create(TENANT)
    http.headers["Authorization"] = f"Bearer {key}"
    return key


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


# The tiny cascade the session trains (other tests train its shape for an epoch or two).
TINY_CASCADE = {
    "input_size": 32,
    "width": 0.0625,
    "weights": "none",
    "batch_size": 16,
    "augment": False,
}
# How the session's version is trained, so that it learns the tiny catalog: batches of 4 give 11
# steps an epoch (16 gave 3, and after 2 epochs batch norm's moving statistics, momentum 0.9,
# were still near their initial values: answers sat at chance, 0.17, on every input). Over seeds
# 0-2 it gets 10, 7 and 7 of its 12 validation photos right (chance: 2), for about 10 s more CPU
# than 2 epochs of 16. patience = epochs: early stopping on 12 photos' loss stopped it halfway.
TINY_TRAINING = {"batch_size": 4, "epochs": 20, "patience": 20}


@pytest.fixture(scope="session")
def trained(tiny_catalog: Path, settings: Settings) -> str:
    """A tiny cascade trained in this session, active in the session registry; its version."""
    from training.config import TrainConfig
    from training.registry import Registry
    from training.train import train

    # fp32: the same numbers on every machine; mixed precision has its own tests
    config = TrainConfig(**{**TINY_CASCADE, **TINY_TRAINING}, precision="fp32")
    return train(tiny_catalog, Registry(settings.registry_dir), config).version


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


@pytest.fixture()
def webhook_workers(
    service_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start webhook workers with a given retry schedule; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(schedule: str = "0.5,0.5,0.5,0.5", timeout: int = 2) -> WorkerProcess:
        env = {
            **service_env,
            "SKUAI_WEBHOOK_RETRY_SCHEDULE": schedule,
            "SKUAI_WEBHOOK_TIMEOUT": str(timeout),
        }
        log = tmp_path / f"webhooks-{len(started)}.log"
        started.append(start_webhook_worker(f"hooks{len(started)}", env, log))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


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
