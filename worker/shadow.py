"""The challenger in the shadow: each inference worker process also runs the version
`skuai models shadow VERSION` names on a sample of the live images it classified.

Why this cannot delay the champion's answers:
- A chunk only *offers* its finished job ids (an append to a bounded in-memory line: no I/O),
  after its results are stored, its events sent and its review images kept (worker/tasks.py).
- The shadow runs on a thread of its own, and only while this process runs no task (Celery's
  task_prerun/task_postrun signals: worker/task_activity.py) and has been idle for IDLE_GRACE:
  with prefetch 1, a process busy with champion work never runs the challenger. A task that
  arrives meanwhile overlaps at most the one small pass (PASS images) under way.
- It decodes on its own thread, not on the process's decode pool, so that a champion chunk
  never queues behind challenger images there; and it loads the challenger into a cache of its
  own, so that the champion's cascades are never evicted.
- Under sustained load the process is never idle: the line overflows and the oldest offers are
  dropped (the challenger sees fewer jobs; the champion none the slower).

The images are still in the blob store: classified jobs keep them for SKUAI_UPLOAD_TIMEOUT
(the sweeper deletes them after that, worker/sweeper.py), and offers older than half of that
are dropped unscored rather than raced against the sweeper. Challenger answers go to
shared/shadow_store.py only: never into the job, the client's result or the champion's drift
metrics."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from shared.errors import SkuaiError
from shared.images import decode
from shared.jobs import SUCCEEDED, Job
from shared.shadow_store import Scored, ShadowStore, answer_of, in_sample
from worker.model_cache import ModelCache
from worker.task_activity import ACTIVITY

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger(__name__)
PASS = 8  # images per challenger pass: what a task arriving mid-pass may overlap
LINE = 512  # offers waiting at most; past it the oldest are dropped
IDLE_GRACE = 0.1  # seconds without a task before a pass starts (tasks come back to back)

_runners: dict[int, ShadowRunner] = {}  # per process id: a forked child builds its own


def offer(rt: Runtime, job_ids: list[str]) -> None:
    """Hand a chunk's finished jobs to this process's shadow (no I/O, never raises)."""
    if not job_ids:
        return
    try:
        runner = _runners.get(os.getpid())
        if runner is None:
            runner = _runners[os.getpid()] = ShadowRunner(rt)
            runner.start()
        runner.offer(job_ids)
    except Exception:  # the shadow must never fail the champion's task
        log.exception("could not hand jobs to the shadow")


class ShadowRunner:
    """One process's shadow: the line of offered jobs and the thread that scores them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.shadows = ShadowStore(rt.conn, ttl=rt.settings.result_ttl)
        precision = rt.settings.inference_precision  # served as the champion is
        self.models = ModelCache(rt.registry, rt.conn, precision=precision, capacity=1)
        self.max_age = rt.settings.upload_timeout / 2
        self._line: deque[tuple[str, float]] = deque(maxlen=LINE)
        self._wake = threading.Condition()

    def start(self) -> None:
        """Start the scoring thread."""
        threading.Thread(target=self._loop, name="skuai-shadow", daemon=True).start()

    def offer(self, job_ids: list[str]) -> None:
        """Queue jobs for scoring (the oldest fall off a full line)."""
        now = time.monotonic()
        with self._wake:
            self._line.extend((job_id, now) for job_id in job_ids)
            self._wake.notify()

    def _next_pass(self) -> list[str]:
        """Wait until there are offers and the process has been idle for IDLE_GRACE."""
        with self._wake:
            while True:
                if self._line and ACTIVITY.idle_for() >= IDLE_GRACE:
                    break
                self._wake.wait(IDLE_GRACE if self._line else None)
            fresh = time.monotonic() - self.max_age
            taken: list[str] = []
            while self._line and len(taken) < PASS:
                job_id, offered = self._line.popleft()
                if offered >= fresh:
                    taken.append(job_id)
            return taken

    def _loop(self) -> None:
        while True:
            job_ids = self._next_pass()
            try:
                self._score(job_ids)
            except Exception:  # Redis down, a broken challenger: the shadow waits for better
                log.exception("the shadow challenger failed on %d jobs", len(job_ids))
                time.sleep(1.0)

    def _score(self, job_ids: list[str]) -> None:
        """Run the challenger on the sampled jobs the champion answered, and record both."""
        config = self.shadows.config()  # one read per pass: a new challenger counts at once
        if config is None:
            return
        sampled = [j for j in job_ids if in_sample(j, config.sample)]
        jobs = [
            job
            for job in self.rt.store.find_many(sampled)
            if job is not None
            and job.status == SUCCEEDED
            and job.result is not None
            and job.duplicate_of is None
            and job.model_version not in (None, config.version)
        ]
        if not jobs:
            return
        cascade = self.models.get(config.version)
        ready, pixels = self._decode(jobs, cascade.input_size)
        if not ready:
            return
        results = cascade.predict(np.stack(pixels))
        by_champion: dict[str, list[Scored]] = {}
        for job, result in zip(ready, results, strict=True):
            scored = Scored(job.id, answer_of(job.result or {}), answer_of(result))
            by_champion.setdefault(str(job.model_version), []).append(scored)
        for champion, scored_jobs in by_champion.items():
            self.shadows.record(champion, config.version, scored_jobs)

    def _decode(self, jobs: list[Job], size: int) -> tuple[list[Job], list[np.ndarray]]:
        """The jobs whose images are still there and decode, and their pixels."""
        ready, pixels = [], []
        max_pixels = self.rt.settings.max_image_pixels
        for job, raw in zip(jobs, self.rt.store.images([j.id for j in jobs]), strict=True):
            if raw is None:
                continue  # deleted already (a URL job's rerun, an expired image): unscored
            try:
                pixels.append(decode(raw, size=size, max_pixels=max_pixels))
            except (SkuaiError, MemoryError):
                continue
            ready.append(job)
        return ready, pixels
