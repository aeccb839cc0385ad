"""Uploads that never finish: an API process killed mid-upload, a refused upload, and a backlog of
both from before the sweeper rolled them back. Each ends `canceled` with exact counters, frees its
Idempotency-Key, and the sweeper clears any backlog a bounded page per pass."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient

from shared import keys
from shared.batch_store import GONE, SEALED, BatchStore, IdempotencyKey
from shared.batches import Batch, new_batch_id
from shared.errors import Conflict, ServiceUnavailable
from shared.job_store import JobStore
from shared.jobs import Job, new_job_id
from shared.queues import make_celery
from shared.redis_client import text
from shared.settings import Settings
from tests.support.images import distinct_images
from tests.support.isolation import isolated_app
from tests.support.polling import wait_until
from tests.support.processes import start_api
from worker.sweeper import BATCHES_PER_PASS, Sweeper

UPLOAD = 1000  # images in the upload that is killed


@pytest.fixture()
def iso_settings(own_db: Settings) -> Settings:
    """The test's own database, with uploads abandoned after 1 s and chunks of 64."""
    return replace(own_db, upload_timeout=1, max_archive_seconds=0.5, chunk_size=64)


def _sweeper(settings: Settings, conn: redis.Redis, upload_timeout: float) -> Sweeper:
    """The sweeper inference workers run (worker/runtime.py), here run by the test."""
    jobs = JobStore(conn, result_ttl=settings.result_ttl, image_ttl=settings.image_ttl)
    return Sweeper(
        conn,
        make_celery(settings),
        BatchStore(conn, jobs),
        stale_after=2.0 * settings.visibility_timeout,
        upload_timeout=upload_timeout,
        chunk_size=settings.chunk_size,
        every=0.001,
    )


def _batch_ids(conn: redis.Redis) -> list[str]:
    names = [text(k) for k in conn.scan_iter("skuai:batch:*")]
    return [name.split(":")[2] for name in names if name.count(":") == 2]


def _pending(conn: redis.Redis) -> int:
    return int(conn.get(keys.PENDING_IMAGES) or 0)


def _upload(client: FlaskClient, images: list[tuple[str, bytes]], key: str) -> tuple[int, dict]:
    data = {"images": [(io.BytesIO(b), name) for name, b in images]}
    response = client.post(
        "/v1/batches",
        data=data,
        content_type="multipart/form-data",
        headers={"Idempotency-Key": key},
    )
    return response.status_code, dict(response.json or {})


def test_upload_killed_midway_is_rolled_back_and_its_key_freed(
    iso_settings: Settings, service_env: dict[str, str], tiny_catalog: Path, tmp_path: Path
) -> None:
    isolated = isolated_app(iso_settings)
    iso, client, conn = isolated.settings, isolated.client, isolated.conn
    api = start_api({**service_env, **iso.env()}, tmp_path / "api.log")
    images = distinct_images(tiny_catalog, UPLOAD)
    files = [("images", (name, data, "image/png")) for name, data in images]
    headers = {**isolated.auth, "Idempotency-Key": "killed-upload"}

    def post() -> None:
        with contextlib.suppress(requests.RequestException):  # the API dies under it
            requests.post(f"{api.url}/v1/batches", files=files, headers=headers, timeout=120)

    def stored() -> int:
        ids = conn.zrange(keys.UNSEALED_BATCHES, 0, 0)
        return int(conn.hget(keys.batch(text(ids[0])), "total") or 0) if ids else 0

    upload = threading.Thread(target=post)
    upload.start()
    try:
        wait_until(lambda: stored() >= 150, 60, "the upload storing images", tmp_path / "api.log")
    finally:
        os.killpg(api.process.pid, signal.SIGKILL)  # gunicorn and its worker, mid-upload
        api.process.wait()
        upload.join(60)
    [batch_id] = _batch_ids(conn)
    total = int(conn.hget(keys.batch(batch_id), "total") or 0)
    assert 150 <= total < UPLOAD, "killed too late to test anything"
    assert _pending(conn) == total  # every stored image waits, some with no task at all
    assert int(conn.hget(keys.QUEUE_RESERVATIONS, batch_id) or 0) == UPLOAD - total
    # While the upload may still be alive, a retry is told so.
    assert _upload(client, images, "killed-upload")[0] == 409

    time.sleep(iso.upload_timeout + 0.1)  # the upload stores nothing for SKUAI_UPLOAD_TIMEOUT
    assert _sweeper(iso, conn, iso.upload_timeout).sweep().abandoned == 1

    batch = client.get(f"/v1/batches/{batch_id}").json
    assert batch["status"] == "canceled" and batch["total"] == total
    assert batch["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": total,
    }
    assert _pending(conn) == 0 and conn.zcard(keys.UNSEALED_BATCHES) == 0
    assert conn.hget(keys.QUEUE_RESERVATIONS, batch_id) is None  # its places are back at once
    status, retried = _upload(client, images, "killed-upload")
    assert status == 202 and retried["id"] != batch_id and retried["total"] == UPLOAD
    assert _pending(conn) == UPLOAD


def test_a_refused_upload_is_rolled_back_at_once(
    iso_settings: Settings, tiny_catalog: Path
) -> None:
    isolated = isolated_app(replace(iso_settings, max_batch_images=3))
    client, conn = isolated.client, isolated.conn
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        for name, data in distinct_images(tiny_catalog, 5):
            out.writestr(name, data)
    archive.seek(0)
    response = client.post(
        "/v1/batches",
        data={"archive": (archive, "five.zip")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    [batch_id] = _batch_ids(conn)
    batch = client.get(f"/v1/batches/{batch_id}").json
    assert batch["status"] == "canceled" and batch["counts"]["queued"] == 0
    assert _pending(conn) == 0
    # Nothing is left for a sweeper to look at.
    assert conn.zcard(keys.UNSEALED_BATCHES) == 0 and conn.zcard(keys.RUNNING_BATCHES) == 0
    assert conn.scard(keys.OPEN_BATCHES) == 0


def test_a_backlog_of_unsealed_batches_is_swept_a_bounded_page_per_pass(
    iso_settings: Settings,
) -> None:
    iso = iso_settings
    conn = redis.Redis.from_url(iso.redis_url)
    jobs = JobStore(conn, result_ttl=600, image_ttl=600)
    store = BatchStore(conn, jobs)
    per_kind = 2 * BATCHES_PER_PASS + 20
    for i in range(2 * per_kind):
        batch = Batch(id=new_batch_id(), tenant="t")
        store.open(batch)
        store.add(batch, Job(id=new_job_id(), tenant="t"), b"image %d" % i)
        if i % 2:  # left by the code before the sorted sets: in one set, scanned whole
            conn.zrem(keys.UNSEALED_BATCHES, batch.id)
            conn.sadd(keys.OPEN_BATCHES, batch.id)
    assert _pending(conn) == 2 * per_kind
    sweeper = _sweeper(iso, conn, upload_timeout=0)

    began = time.perf_counter()
    first = sweeper.sweep()
    assert time.perf_counter() - began < 1.0
    assert first.abandoned == BATCHES_PER_PASS and first.migrated == BATCHES_PER_PASS
    abandoned, passes = first.abandoned, 1
    while conn.zcard(keys.UNSEALED_BATCHES) or conn.scard(keys.OPEN_BATCHES):
        time.sleep(0.01)  # past the pass lock
        abandoned += sweeper.sweep().abandoned
        passes += 1
    assert abandoned == 2 * per_kind and passes <= 6
    assert _pending(conn) == 0
    statuses = {text(conn.hget(keys.batch(b), "status") or b"") for b in _batch_ids(conn)}
    assert statuses == {"canceled"}


def test_an_upload_rolled_back_under_its_live_request_is_not_accepted(
    iso_settings: Settings,
) -> None:
    conn = redis.Redis.from_url(iso_settings.redis_url)
    store = BatchStore(conn, JobStore(conn, result_ttl=600, image_ttl=600))
    stalled, retry = (Batch(id=new_batch_id(), tenant="t") for _ in range(2))
    assert store.claim_idempotency_key("t", "key", stalled.id, "same body") is None
    store.open(stalled)
    store.add(stalled, Job(id=new_job_id(), tenant="t"), b"image")
    assert store.abandon(stalled.id) == 1  # the sweeper: nothing stored for too long
    assert store.claim_idempotency_key("t", "key", retry.id, "same body") is None
    with pytest.raises(ServiceUnavailable):  # the request wakes up: 503, never a 202
        store.seal(stalled.id)
    assert store.abandon(stalled.id) == GONE  # its clean-up...
    with pytest.raises(Conflict):  # ...leaves the retry's reservation alone
        store.claim_idempotency_key("t", "key", new_batch_id(), "same body")


def test_a_rolled_back_upload_stores_nothing_more(iso_settings: Settings) -> None:
    conn = redis.Redis.from_url(iso_settings.redis_url)
    store = BatchStore(conn, JobStore(conn, result_ttl=600, image_ttl=600))
    stalled = Batch(id=new_batch_id(), tenant="t")
    store.open(stalled)
    store.add(stalled, Job(id=new_job_id(), tenant="t"), b"image")
    assert store.abandon(stalled.id) == 1  # the sweeper, under the live request
    late = Job(id=new_job_id(), tenant="t")
    with pytest.raises(ServiceUnavailable):  # the request goes on: 503, and nothing is stored
        store.add(stalled, late, b"another image")
    assert conn.exists(keys.job(late.id), keys.image(late.id)) == 0
    assert _pending(conn) == 0 and conn.llen(keys.batch_jobs(stalled.id)) == 1
    batch = store.find(stalled.id)
    assert batch is not None and batch.status == "canceled" and batch.total == 1


def test_a_sealed_batch_keeps_its_key_and_is_never_rolled_back(iso_settings: Settings) -> None:
    conn = redis.Redis.from_url(iso_settings.redis_url)
    store = BatchStore(conn, JobStore(conn, result_ttl=600, image_ttl=600))
    batch = Batch(id=new_batch_id(), tenant="t")
    assert store.claim_idempotency_key("t", "key", batch.id, "body") is None
    store.open(batch)
    store.add(batch, Job(id=new_job_id(), tenant="t"), b"image")
    store.seal(batch.id, idempotency=IdempotencyKey("t", "key", "body"))
    # Its request fails after the seal (the reply was lost): cleaning up finds it accepted.
    assert store.abandon(batch.id) == SEALED
    assert store.claim_idempotency_key("t", "key", new_batch_id(), "body") == batch.id
    found = store.find(batch.id)
    assert found is not None and found.status == "queued" and _pending(conn) == 1


def test_events_that_cannot_be_recorded_never_duplicate_a_keyed_batch(
    iso_settings: Settings, tiny_catalog: Path
) -> None:
    isolated = isolated_app(iso_settings)
    client, conn = isolated.client, isolated.conn
    # one image fails at upload, so sealing records job events; their schedule cannot be written
    images = [*distinct_images(tiny_catalog, 1), ("broken.png", b"not an image")]
    conn.set(keys.EVENTS_DUE, "not a sorted set")
    first, _ = _upload(client, images, "events-fail")
    conn.delete(keys.EVENTS_DUE)
    retried, body = _upload(client, images, "events-fail")
    again = _upload(client, images, "events-fail")[1]
    accepted = [b for b in _batch_ids(conn) if conn.hget(keys.batch(b), "abandoned") is None]
    # Either the failure sealed nothing (refused, retried) or the batch was accepted once.
    assert accepted == [body["id"]] == [again["id"]], (first, retried)
    assert retried == 202 and conn.zcard(keys.EVENTS_DUE) == 1
