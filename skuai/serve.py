"""Running one component in this process: the API under gunicorn, a Celery worker, Flower."""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared import defaults
from shared.settings import Settings

WORKER_TIMEOUT = 60  # seconds a worker may be silent (booting, say) before gunicorn kills it
WORKER_TIMEOUT_MARGIN = 30  # ... and at least this much beyond SKUAI_MAX_ARCHIVE_SECONDS


def run_api(settings: Settings, *, host: str, port: int, workers: int = 2) -> None:
    """Serve the Flask app with gunicorn's gevent workers (skuai.api_worker): a slow client or a
    long poll holds a greenlet, not a thread, so neither can starve the others."""
    from gunicorn.app.base import BaseApplication

    # Metrics of all gunicorn workers are summed through files in this folder; it must be set
    # before prometheus_client is imported, and start empty.
    metrics_dir = Path(tempfile.mkdtemp(prefix="skuai-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from prometheus_client import multiprocess

    from shared.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    def child_exit(server: Any, worker: Any) -> None:
        multiprocess.mark_process_dead(worker.pid)

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "skuai.api_worker.ApiWorker",
                "worker_connections": defaults.API_CONNECTIONS,
                # The deadline for a request's headers, each body read and response write, and
                # an idle keep-alive connection (skuai.api_worker).
                "keepalive": settings.client_timeout,
                # A worker silent this long is killed with every request in it: longer than the
                # longest unpack, should one ever hold up the hub (web.blocking keeps it off).
                "timeout": max(
                    WORKER_TIMEOUT,
                    math.ceil(settings.max_archive_seconds) + WORKER_TIMEOUT_MARGIN,
                ),
                # Lets the longest long poll finish on shutdown.
                "graceful_timeout": defaults.MAX_WAIT_SECONDS + 5,
                "accesslog": "-",
                # Unused, and two API processes on one host would share its default path.
                "control_socket_disable": True,
                "child_exit": child_exit,
                "loglevel": settings.log_level.lower(),
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Imported in the worker, after gevent has patched the standard library, so that
            # Redis, Celery and Flask are built on the patched sockets and locks.
            from web.app import create_app

            return create_app(settings)

    try:
        _Gunicorn().run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def parse_queues(raw: str) -> list[str]:
    """`--queues a,b`: known queue names only."""
    # Imported here: Celery must not be loaded in the API's gunicorn master, before gevent
    # patches the standard library in its workers.
    from shared.queues import ALL_QUEUES

    queues = [q.strip() for q in raw.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(ALL_QUEUES))
    if not queues or unknown:
        raise ValueError(
            f"unknown queue(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(ALL_QUEUES)}"
        )
    return queues


def run_worker(settings: Settings, *, queues: list[str], concurrency: int, name: str) -> None:
    """A Celery worker on these queues; prefork, so each model lives in its own child process."""
    from worker.celery_app import create_app

    create_app(settings).worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--hostname",
            f"{name}@%h",
            "--loglevel",
            settings.log_level,
            "--task-events",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def run_flower(settings: Settings, *, port: int) -> None:
    """Replace this process with Flower watching the service's Celery app."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "flower",
        f"--port={port}",
        "--address=0.0.0.0",
    ]
    if settings.flower_basic_auth:
        command.append(f"--basic-auth={settings.flower_basic_auth}")
    os.execv(sys.executable, command)
