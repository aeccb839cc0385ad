"""The Celery entry point (`celery -A worker.celery_app`): the workers' app, built from settings.

`skuai worker` builds it with `create_app(settings)`; Celery's own command line reads `app` here,
which builds it from the environment at the start of that process. The app carries the settings
to the pool processes it forks, and each pool process keeps its runtime on it. Nothing here
imports TensorFlow; models load in each pool process after the fork."""

from __future__ import annotations

import functools
import socket
import sys
from typing import TYPE_CHECKING, Any

from celery import Celery

from shared.errors import ConfigError
from shared.queues import celery_config
from shared.redis_client import broker_url
from shared.settings import Settings
from worker.failpoints import Failpoints

if TYPE_CHECKING:
    from worker.runtime import Runtime

TASK_MODULES = ["worker.tasks"]


class WorkerApp(Celery):
    """The workers' Celery app: the settings it was built from, the Celery node name, and (in
    each pool process, once built after the fork) that process's runtime."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("skuai", broker=broker_url(settings), include=TASK_MODULES)
        self.conf.update(celery_config(settings, consumes=True))
        self.settings = settings
        self.node_name = socket.gethostname()  # Celery's node name (e.g. celery@host) once known
        self.runtime: Runtime | None = None
        self.failpoints = Failpoints.from_env()  # read once, where the worker starts

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled apps are rebuilt from their settings (Celery's own reduce passes other
        arguments)."""
        return (WorkerApp, (self.settings,))


def create_app(settings: Settings) -> WorkerApp:
    """The workers' app, with the per-process signal handlers connected to it."""
    from worker.lifecycle import Lifecycle

    app = WorkerApp(settings)
    Lifecycle(app).connect()
    return app


def __getattr__(name: str) -> WorkerApp:
    """`app`, for Celery's command line (`-A worker.celery_app`), built on first access."""
    if name == "app":
        return _app_from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache  # every access gets the same app: two would make two runtimes
def _app_from_env() -> WorkerApp:
    try:
        return create_app(Settings.from_env())
    except ConfigError as exc:  # one line, not Celery's traceback, for a bad value
        sys.exit(f"error: {exc.message}")  # as skuai's commands do (skuai/cli_base.py)
