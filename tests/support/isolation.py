"""The real Flask app on a Redis database of a test's own, and the environment for the worker
processes that serve it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import redis
from flask.testing import FlaskClient

from shared.api_keys import KeyStore
from shared.settings import Settings
from tests.support.http import TENANT, authorized
from tests.support.processes import WorkerProcess, start_worker


@dataclass
class Isolated:
    """An in-process API on its own settings: a test client with a key, and a Redis client."""

    settings: Settings
    client: FlaskClient
    conn: redis.Redis

    @property
    def auth(self) -> dict[str, str]:
        """The client's Authorization header, for requests to an API process on these settings."""
        return {"Authorization": self.client.environ_base["HTTP_AUTHORIZATION"]}

    def worker_env(self, service_env: dict[str, str], **extra: str) -> dict[str, str]:
        """`service_env` for a worker of this Redis database and model registry."""
        return {
            **service_env,
            "SKUAI_REDIS_URL": self.settings.redis_url,
            "SKUAI_REGISTRY": str(self.settings.registry_dir),
            **extra,
        }


def isolated_app(settings: Settings, tenant: str = TENANT) -> Isolated:
    """The real Flask app on `settings` (usually a Redis database of the test's own), as a test
    client holding a new key of `tenant`, and a client of that Redis."""
    from web.app import create_app

    conn = redis.Redis.from_url(settings.redis_url)
    client = authorized(create_app(settings).test_client(), KeyStore(conn).create(tenant))
    return Isolated(settings, client, conn)


@dataclass
class OwnWorkers:
    """Inference worker processes a test starts on its own Redis database; all are stopped when
    the test ends, so none serves the next test to get that database."""

    service_env: dict[str, str]
    logs: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, iso: Isolated, name: str, version: str | None, **env: str) -> WorkerProcess:
        """Start worker `name` for `iso` (with `env` on top) and wait until it has `version`."""
        log = self.logs / f"{name}.log"
        worker = start_worker(
            name, iso.worker_env(self.service_env, **env), iso.settings, log, version
        )
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        """Stop every worker still running."""
        for worker in self.started:
            worker.stop()
