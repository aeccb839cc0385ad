"""Whether this worker process is running a task, from Celery's task_prerun and task_postrun
signals: work that must not compete with the model (the shadow challenger, worker/shadow.py; the
sweeper's blob pass, worker/sweeper.py) runs only once the process has been idle a while.

One tracker per process: the receivers are connected when this module is imported (in the
worker's main process, as worker/tasks.py imports it through worker/shadow.py), so a forked
pool process inherits them with its own copy of the state, and sees its very first task start."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery.signals import task_postrun, task_prerun


class TaskActivity:
    """Tasks running in this process, and since when none has."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self._idle_since = time.monotonic()  # idle since it started: no task has run yet

    def idle_for(self) -> float:
        """Seconds since the last task ended, or since this process started (0 while one runs)."""
        with self._lock:
            return 0.0 if self._busy else time.monotonic() - self._idle_since

    def started(self, **_: Any) -> None:
        """task_prerun."""
        with self._lock:
            self._busy += 1

    def ended(self, **_: Any) -> None:
        """task_postrun."""
        with self._lock:
            self._busy = max(0, self._busy - 1)
            self._idle_since = time.monotonic()


ACTIVITY = TaskActivity()
task_prerun.connect(ACTIVITY.started, weak=False)
task_postrun.connect(ACTIVITY.ended, weak=False)
