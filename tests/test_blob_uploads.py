"""Uploads through the service with their bytes in the blob store, not in Redis: the sweeper
removes them once final, a store that cannot write refuses the upload with nothing left, a batch
runs end to end on the S3 store, reads that fail for a moment retry the chunk (split from
tests/test_blob_store.py, which holds the store's own contract)."""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import keys
from shared.batch_store import BatchStore
from shared.blobs import open_blob_store
from shared.blobs.files import FileBlobStore
from shared.blobs.store import image_key
from shared.errors import (
    BlobStoreUnavailable,
)
from shared.job_store import JobStore
from shared.queues import make_celery
from shared.redis_client import text
from shared.settings import Settings
from tests.support.batches import batch_results, wait_for_batch
from tests.support.http import http
from tests.support.images import distinct_images
from tests.support.isolation import OwnWorkers, isolated_app
from tests.support.polling import wait_until
from tests.support.processes import WorkerProcess
from tests.support.s3_server import BUCKET, S3Server
from worker.sweeper import Sweeper

# --- uploads through the service ----------------------------------------------------------------


def _sweep_images(settings: Settings, conn: redis.Redis) -> int:
    """One orphan pass of the sweeper inference workers run, with SKUAI_UPLOAD_TIMEOUT 0 (the
    pass itself: a worker's own sweeper may hold the sweeper's locks)."""
    blobs = open_blob_store(settings)
    jobs = JobStore(conn, result_ttl=settings.result_ttl, image_ttl=settings.image_ttl, blobs=blobs)
    sweeper = Sweeper(
        conn,
        make_celery(settings),
        BatchStore(conn, jobs),
        stale_after=2.0 * settings.visibility_timeout,
        upload_timeout=0,
        chunk_size=settings.chunk_size,
        every=0.001,
        image_ttl=settings.image_ttl,
    )
    return sweeper._remove_orphan_images(blobs)


def test_uploads_wait_in_the_blob_store_and_the_sweeper_removes_them_once_final(
    own_db: Settings, tiny_catalog: Path
) -> None:
    iso = isolated_app(own_db)  # no worker on this database: the jobs wait
    images = distinct_images(tiny_catalog, 3)
    files = [(io.BytesIO(data), name) for name, data in [*images, images[0]]]  # one twice
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    batch_id = response.json["id"]  # type: ignore[index]
    items = iso.client.get(f"/v1/batches/{batch_id}/results").json["items"]  # type: ignore[index]
    job_ids = [item["id"] for item in items]
    assert list(iso.conn.scan_iter(keys.image("*"))) == []  # Redis holds no image bytes
    blobs = open_blob_store(own_db)
    stored = blobs.get_many([image_key(j) for j in job_ids])
    assert stored == [data for _, data in images] + [None]  # the duplicate shares its twin's
    assert _sweep_images(own_db, iso.conn) == 0  # waiting jobs keep their images
    assert iso.client.post(f"/v1/batches/{batch_id}/cancel").status_code == 200
    assert _sweep_images(own_db, iso.conn) == 3
    assert blobs.get_many([image_key(j) for j in job_ids]) == [None] * 4


def test_a_classified_image_stays_until_the_sweeper_removes_it(
    api_url: str, inference_worker: WorkerProcess, settings: Settings, tiny_catalog: Path
) -> None:
    images = distinct_images(tiny_catalog, 2, salt=7)
    response = http.post(
        f"{api_url}/v1/batches",
        files=[("images", (name, data, "image/png")) for name, data in images],
        timeout=30,
    )
    assert response.status_code == 202, response.text
    batch = wait_for_batch(api_url, response.json()["id"])
    assert batch["counts"]["succeeded"] == 2
    job_ids = [item["id"] for item in batch_results(api_url, batch["id"])]
    blobs = open_blob_store(settings)
    # Kept for a rerun after a Redis failover lost a result (docs/reliability.md)...
    assert None not in blobs.get_many([image_key(j) for j in job_ids])
    conn = redis.Redis.from_url(settings.redis_url)
    _sweep_images(settings, conn)  # ...until the sweeper finds the jobs final for long enough
    assert blobs.get_many([image_key(j) for j in job_ids]) == [None, None]


def test_a_store_that_cannot_write_refuses_the_upload_with_nothing_left(
    own_db: Settings, tiny_catalog: Path, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")  # the store's folder cannot be made: a file is in its place
    iso = isolated_app(replace(own_db, blob_url=(blocked / "blobs").as_uri()))
    files = [(io.BytesIO(data), name) for name, data in distinct_images(tiny_catalog, 2)]
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"]["code"] == "service_unavailable"  # type: ignore[index]
    statuses = {
        text(iso.conn.hget(key, "status") or b"")
        for key in iso.conn.scan_iter("skuai:batch:*")
        if text(key).count(":") == 2
    }
    assert statuses == {"canceled"}  # rolled back: no half-created batch waits
    assert int(iso.conn.get(keys.PENDING_IMAGES) or 0) == 0
    ready = iso.client.get("/readyz")  # and readiness says why, so traffic goes elsewhere
    assert ready.status_code == 503
    assert ready.json["checks"]["redis"] == "ok"  # type: ignore[index]
    assert ready.json["checks"]["blob_store"] != "ok"  # type: ignore[index]


def test_a_batch_runs_end_to_end_on_the_s3_store(
    own_db: Settings,
    own_workers: OwnWorkers,
    trained: str,
    s3_server: S3Server,
    tiny_catalog: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env().items():  # the in-process API's boto3 reads these
        monkeypatch.setenv(name, value)
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    iso = isolated_app(replace(own_db, blob_url=f"s3://{BUCKET}/{prefix}"))
    images = distinct_images(tiny_catalog, 12, salt=9)
    files = [(io.BytesIO(data), name) for name, data in images]
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    bucket: Any = s3_server.client()
    assert bucket.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["KeyCount"] == 12  # waiting
    own_workers.start(
        iso, "s3", trained, SKUAI_BLOB_URL=f"s3://{BUCKET}/{prefix}", **s3_server.env()
    )
    url = f"/v1/batches/{response.json['id']}"  # type: ignore[index]
    deadline = time.monotonic() + 120
    while (batch := iso.client.get(url).json)["status"] != "completed":  # type: ignore[index]
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    assert batch["counts"]["succeeded"] == 12  # type: ignore[index]
    assert list(iso.conn.scan_iter(keys.image("*"))) == []
    waiting = f"{prefix}/images/"  # the batch's result archive sits beside them, in results/
    assert bucket.list_objects_v2(Bucket=BUCKET, Prefix=waiting)["KeyCount"] == 12  # kept...
    assert _sweep_images(iso.settings, iso.conn) == 12  # ...until the sweeper's pass
    assert bucket.list_objects_v2(Bucket=BUCKET, Prefix=waiting)["KeyCount"] == 0


def _job_ids(iso: Any, batch_id: str) -> list[str]:
    items = iso.client.get(f"/v1/batches/{batch_id}/results").json["items"]
    return [item["id"] for item in items]


def _attempts(conn: redis.Redis, job_ids: list[str]) -> list[int]:
    return [int(conn.hget(keys.job(j), "attempts") or 0) for j in job_ids]


def _wait_completed(iso: Any, batch_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (batch := iso.client.get(f"/v1/batches/{batch_id}").json)["status"] != "completed":
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
    return batch


def test_a_store_that_fails_reads_for_a_moment_retries_the_chunk_soon(
    own_db: Settings,
    own_workers: OwnWorkers,
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    root, away = tmp_path / "blobs", tmp_path / "away"
    iso = isolated_app(replace(own_db, blob_url=root.as_uri()))
    images = distinct_images(tiny_catalog, 5, salt=11)
    files = [(io.BytesIO(data), name) for name, data in images]
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    batch_id = response.json["id"]  # type: ignore[index]
    job_ids = _job_ids(iso, batch_id)
    root.rename(away)
    root.write_bytes(b"")  # a file where the folder was: every read fails (as root too)
    own_workers.start(iso, "flaky-store", trained, SKUAI_BLOB_URL=root.as_uri())
    wait_until(lambda: min(_attempts(iso.conn, job_ids)) >= 1, 30, "the chunk being claimed")
    time.sleep(0.5)  # the read fails; the task retries in 1 s
    root.unlink()
    away.rename(root)  # the store is back
    batch = _wait_completed(iso, batch_id, timeout=30)  # long before any sweeper resend
    assert batch["counts"]["succeeded"] == 5
    assert batch["counts"]["failed"] == 0
    assert min(_attempts(iso.conn, job_ids)) >= 2  # the failed read happened, then the retry


class _RefusesSecondWrite(FileBlobStore):
    """A real folder store whose second write is refused, as a store that fills up or drops
    its connection in the middle of an upload would."""

    writes = 0

    def put_many(self, items: Any) -> None:
        self.writes += 1
        if self.writes == 2:
            raise BlobStoreUnavailable("the blob store cannot write to its folder (test)")
        super().put_many(items)


def test_a_write_refused_mid_upload_leaves_no_image_of_the_rolled_back_batch(
    own_db: Settings, tiny_catalog: Path, tmp_path: Path
) -> None:
    root = tmp_path / "blobs"
    # Chunks of one: the upload stores a page of one image per blob write (web/batch_intake.py).
    iso = isolated_app(replace(own_db, blob_url=root.as_uri(), chunk_size=1))
    services = iso.client.application.extensions["skuai"]
    services.jobs.blobs = _RefusesSecondWrite(root)  # the API's one JobStore (BatchStore's too)
    assert services.batches.jobs is services.jobs
    files = [(io.BytesIO(data), name) for name, data in distinct_images(tiny_catalog, 3, salt=13)]
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 503, response.json
    assert services.jobs.blobs.writes == 2  # the first image was stored, then its job
    canceled = [
        text(key)
        for key in iso.conn.scan_iter(keys.job("*"))
        if iso.conn.hget(key, "status") == b"canceled"
    ]
    assert len(canceled) == 1  # the first job, canceled by the roll-back
    assert FileBlobStore(root).older_than(time.time() + 60, 100) == []  # and no image is left


def test_the_orphan_sweep_pages_on_past_images_still_waiting(
    own_db: Settings, tiny_catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = replace(own_db, blob_url=(tmp_path / "blobs").as_uri())
    iso = isolated_app(settings)  # no worker: the jobs wait
    batch_of: dict[str, str] = {}  # job id -> its batch (one image each)
    for name, data in distinct_images(tiny_catalog, 8, salt=17):
        response = iso.client.post(
            "/v1/batches",
            data={"images": [(io.BytesIO(data), name)]},
            content_type="multipart/form-data",
        )
        assert response.status_code == 202, response.json
        batch_id = response.json["id"]  # type: ignore[index]
        batch_of[_job_ids(iso, batch_id)[0]] = batch_id
    listed = FileBlobStore(tmp_path / "blobs").older_than(time.time() + 60, 100)
    last_two = [key.removeprefix("images/") for key in listed[-2:]]
    for job_id in last_two:  # the images listed last are final; the first pages' still wait
        assert iso.client.post(f"/v1/batches/{batch_of[job_id]}/cancel").status_code == 200
    monkeypatch.setattr("worker.sweeper.ORPHANS_PAGE", 2)  # a pass reads one page of two
    monkeypatch.setattr("worker.sweeper.ORPHANS_SECONDS", 0.0)
    removed = [_sweep_images(settings, iso.conn) for _ in range(4)]  # 8 images: 4 pages
    assert removed == [0, 0, 0, 2]
    left = FileBlobStore(tmp_path / "blobs").older_than(time.time() + 60, 100)
    assert left == listed[:-2]  # the waiting jobs' images stay


def test_the_upload_routes_document_a_full_store() -> None:
    from web.openapi import openapi_document

    paths = openapi_document()["paths"]
    for path in ("/v1/batches", "/v1/jobs"):
        responses = paths[path]["post"]["responses"]
        assert {"503", "507"} <= set(responses), path
        assert "blob store is full" in responses["507"]["description"]
