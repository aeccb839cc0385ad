"""The Celery entry point (`celery -A worker.celery_app`): builds the one app from settings.

Nothing here imports TensorFlow; models load in each pool process after the fork."""

from __future__ import annotations

from shared.queues import make_celery
from shared.settings import Settings

settings = Settings.from_env()
app = make_celery(settings, include=("worker.tasks",))

from worker import lifecycle  # noqa: E402,F401 - connects the per-process signal handlers
