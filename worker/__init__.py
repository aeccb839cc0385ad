"""Celery workers: the app (`worker.celery_app`, the `-A` target), thin tasks, and inference."""
