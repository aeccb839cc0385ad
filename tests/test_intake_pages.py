"""An upload's images are stored a page at a time (BatchStore.add_many): one blob write and a
fixed number of Redis round trips for the page however many images it holds, with duplicates,
upload order, failures at upload and a rolled-back upload handled as one image at a time did.
And the sweeper's blob pass waits for the worker process to be idle (worker/task_activity.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import keys
from shared.batch_store import DUPLICATE, FINISHED, TO_CLASSIFY, BatchStore, NewImage
from shared.batches import Batch, new_batch_id
from shared.blobs.files import FileBlobStore
from shared.blobs.store import image_key
from shared.errors import ServiceUnavailable
from shared.job_store import JobStore
from shared.jobs import FAILED, SUCCEEDED, Job, new_job_id
from shared.queues import make_celery
from shared.redis_client import text
from shared.settings import Settings
from worker.sweeper import Sweeper
from worker.task_activity import TaskActivity


class _CountingConnection(redis.Connection):
    """A real connection that counts what it sends: one send per round trip (a pipeline sends
    all its commands at once)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)


def _stores(settings: Settings, root: Path) -> tuple[redis.Redis, BatchStore]:
    pool = redis.ConnectionPool.from_url(settings.redis_url, connection_class=_CountingConnection)
    conn = redis.Redis(connection_pool=pool)
    jobs = JobStore(conn, result_ttl=600, image_ttl=600, blobs=FileBlobStore(root))
    return conn, BatchStore(conn, jobs)


def _open(store: BatchStore) -> Batch:
    batch = Batch(id=new_batch_id(), tenant="t")
    store.open(batch)
    return batch


def _page(count: int, salt: str) -> list[NewImage]:
    return [
        NewImage(Job(id=new_job_id(), tenant="t"), f"{salt} {i}".encode()) for i in range(count)
    ]


def _round_trips(store: BatchStore, batch: Batch, images: list[NewImage]) -> int:
    before = _CountingConnection.sends
    assert store.add_many(batch, images) == [TO_CLASSIFY] * len(images)
    return _CountingConnection.sends - before


def test_a_page_takes_the_same_round_trips_for_5_or_60_images(
    own_db: Settings, tmp_path: Path
) -> None:
    conn, store = _stores(own_db, tmp_path)
    batch = _open(store)
    _round_trips(store, batch, _page(1, "warm"))  # loads the scripts once
    few, many = (
        _round_trips(store, batch, _page(5, "few")),
        _round_trips(store, batch, _page(60, "many")),
    )
    assert few == many <= 2  # SCRIPT EXISTS and the pipeline
    assert conn.llen(keys.batch_jobs(batch.id)) == 66
    batch_now = store.find(batch.id)
    assert batch_now is not None and batch_now.total == 66 and batch_now.counts["queued"] == 66


def test_duplicates_failures_and_order_within_and_across_pages(
    own_db: Settings, tmp_path: Path
) -> None:
    conn, store = _stores(own_db, tmp_path)
    batch = _open(store)
    first, second, twin, broken = (Job(id=new_job_id(), tenant="t") for _ in range(4))
    page = [
        NewImage(first, b"same bytes"),
        NewImage(broken, error={"code": "invalid_image", "message": "not an image"}),
        NewImage(second, b"other bytes"),
        NewImage(twin, b"same bytes"),  # its twin is in the same page, stored just before
    ]
    assert store.add_many(batch, page) == [TO_CLASSIFY, FINISHED, TO_CLASSIFY, DUPLICATE]
    assert twin.duplicate_of == first.id and broken.status == FAILED
    order = [text(i) for i in conn.lrange(keys.batch_jobs(batch.id), 0, -1)]
    assert order == [first.id, broken.id, second.id, twin.id]
    assert [text(conn.hget(keys.job(i), "position") or b"") for i in order] == ["0", "1", "2", "3"]
    blobs = FileBlobStore(tmp_path)
    assert blobs.get_many([image_key(j.id) for j in page_jobs(page)]) == [
        b"same bytes",
        None,
        b"other bytes",
        None,  # a duplicate keeps no copy of its twin's bytes
    ]
    # A later page: a twin of a queued image waits; once that one is done, a twin is a copy.
    late = Job(id=new_job_id(), tenant="t")
    assert store.add_many(batch, [NewImage(late, b"other bytes")]) == [DUPLICATE]
    result = {"sku": {"label": "a", "confidence": 0.9}}
    assert store.jobs.finish(first.id, SUCCEEDED, model_version="v1", result=result)
    copy = Job(id=new_job_id(), tenant="t")
    assert store.add_many(batch, [NewImage(copy, b"same bytes")]) == [FINISHED]
    found = store.jobs.find(copy.id)
    assert found is not None and found.status == SUCCEEDED and found.duplicate_of == first.id
    twin_now = store.jobs.find(twin.id)
    assert twin_now is not None and twin_now.status == SUCCEEDED  # finished with its twin
    counted = store.find(batch.id)
    assert counted is not None and counted.total == 6
    assert counted.counts["queued"] == 2 and counted.counts["succeeded"] == 3


def test_a_page_sent_again_is_stored_once(own_db: Settings, tmp_path: Path) -> None:
    conn, store = _stores(own_db, tmp_path)
    batch = _open(store)
    page = [*_page(2, "again"), NewImage(Job(id=new_job_id(), tenant="t"), b"again 0")]
    first = store.add_many(batch, page)
    assert store.add_many(batch, page) == first == [TO_CLASSIFY, TO_CLASSIFY, DUPLICATE]
    counted = store.find(batch.id)
    assert counted is not None and counted.total == 3 and counted.counts["queued"] == 3
    assert (
        conn.llen(keys.batch_jobs(batch.id)) == 3 and int(conn.get(keys.PENDING_IMAGES) or 0) == 3
    )


def page_jobs(page: list[NewImage]) -> list[Job]:
    return [image.job for image in page]


def test_a_page_refused_after_a_roll_back_stores_nothing_and_leaves_no_image(
    own_db: Settings, tmp_path: Path
) -> None:
    conn, store = _stores(own_db, tmp_path)
    batch = _open(store)
    store.add_many(batch, _page(2, "kept"))
    assert store.abandon(batch.id) == 2  # the sweeper rolls the stalled upload back
    late = _page(3, "late")
    with pytest.raises(ServiceUnavailable):
        store.add_many(batch, late)
    assert conn.exists(*[keys.job(image.job.id) for image in late]) == 0
    assert FileBlobStore(tmp_path).get_many([image_key(i.job.id) for i in late]) == [None] * 3
    assert conn.llen(keys.batch_jobs(batch.id)) == 2


def _final_old_image(store: BatchStore, root: Path) -> str:
    """A classified job whose image the sweeper may delete: final, and written long ago."""
    batch = _open(store)
    job = Job(id=new_job_id(), tenant="t")
    store.add_many(batch, [NewImage(job, b"classified " + job.id.encode())])
    result = {"sku": {"label": "a", "confidence": 0.9}}
    store.jobs.finish(job.id, SUCCEEDED, model_version="v1", result=result)
    store.seal(batch.id)  # an upload under way would keep the blob pass waiting too
    store.conn.hset(keys.job(job.id), "finished_at", "2020-01-01T00:00:00+00:00")
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    return job.id


def _sweeper(settings: Settings, store: BatchStore, activity: TaskActivity, wait: float) -> Sweeper:
    return Sweeper(
        store.conn,
        make_celery(settings),
        store,
        stale_after=600,
        upload_timeout=wait,
        chunk_size=settings.chunk_size,
        every=0.001,
        activity=activity,
    )


def test_the_blob_pass_waits_for_an_idle_worker_unless_it_is_long_overdue(
    own_db: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.sweeper.IDLE_BEFORE_BLOBS", 0.2)
    _, store = _stores(own_db, tmp_path)
    blobs = FileBlobStore(tmp_path)
    activity = TaskActivity()
    job_id = _final_old_image(store, tmp_path)
    sweeper = _sweeper(own_db, store, activity, wait=60)
    activity.started()  # a chunk runs: the image stays
    assert sweeper.sweep().orphans == 0 and blobs.get(image_key(job_id)) is not None
    activity.ended()
    time.sleep(0.01)
    assert sweeper.sweep().orphans == 0  # one task handing over to the next: not idle yet
    time.sleep(0.25)
    uploading = _open(store)  # an upload under way: the API needs the cores
    assert sweeper.sweep().orphans == 0
    store.seal(uploading.id)
    time.sleep(0.01)  # past the pass lock
    assert sweeper.sweep().orphans == 1 and blobs.get(image_key(job_id)) is None
    # Busy without a break for longer than SKUAI_UPLOAD_TIMEOUT: a short pass all the same.
    other = _final_old_image(store, tmp_path)
    activity.started()
    overdue = _sweeper(own_db, store, activity, wait=0.05)
    time.sleep(0.1)
    assert overdue.sweep().orphans == 1 and blobs.get(image_key(other)) is None
