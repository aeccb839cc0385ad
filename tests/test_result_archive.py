"""Results that outlive Redis: a finished batch's results are archived in the blob store, and the
API answers from there, identically and for its tenant only, once the batch's Redis records are
gone, until SKUAI_RESULT_ARCHIVE_TTL. Also: images fetched for URL batches wait in the store as
uploads do."""

from __future__ import annotations

import functools
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import keys
from shared.batch_store import BatchStore
from shared.blobs import BlobStore, open_blob_store
from shared.blobs.files import FileBlobStore
from shared.blobs.store import image_key
from shared.job_store import JobStore
from shared.queues import make_celery
from shared.redis_client import text
from shared.result_archive import BATCH, CSV_BLOB, NDJSON_BLOB, archive_key
from shared.settings import Settings
from tests.support.batches import batch_results, wait_for_batch
from tests.support.http import http, tenant_session
from tests.support.images import catalog_images, distinct_images
from tests.support.isolation import isolated_app
from tests.support.polling import wait_until
from tests.support.processes import WorkerProcess
from tests.support.s3_server import BUCKET, S3Server
from tests.test_feedback import catalog
from worker.sweeper import Sweeper

JSON, CSV, NDJSON = "application/json", "text/csv", "application/x-ndjson"
FILTERS = ("sku", "model", "unknown", "sku,unknown")
# (path under the batch, query, Accept) -> (status, body)
Get = Callable[[str, dict[str, str], str], tuple[int, bytes]]


def _via_http(api_url: str, session: object = http) -> Get:
    def get(path: str, params: dict[str, str], accept: str) -> tuple[int, bytes]:
        reply = session.get(  # type: ignore[attr-defined]
            api_url + path, params=params, headers={"Accept": accept}, timeout=10
        )
        return reply.status_code, reply.content

    return get


def _via_client(client: object) -> Get:
    def get(path: str, params: dict[str, str], accept: str) -> tuple[int, bytes]:
        reply = client.get(path, query_string=params, headers={"Accept": accept})  # type: ignore[attr-defined]
        return reply.status_code, reply.data

    return get


def _answers(get: Get, batch_id: str) -> dict[tuple[str, str, str], tuple[int, bytes]]:
    """Everything the API says about a batch: the batch, every page (small pages, each filter,
    walking the cursors), the exports with and without a filter, and a cursor past the end."""
    base = f"/v1/batches/{batch_id}"
    seen: dict[tuple[str, str, str], tuple[int, bytes]] = {}

    def ask(path: str, params: dict[str, str], accept: str = JSON) -> tuple[int, bytes]:
        seen[(path, str(sorted(params.items())), accept)] = get(path, params, accept)
        return seen[(path, str(sorted(params.items())), accept)]

    ask(base, {})
    for extra in [{}, *({"decision": d} for d in FILTERS)]:
        cursor: str | None = "0"
        while cursor is not None:
            status, body = ask(f"{base}/results", {"cursor": cursor, "limit": "2", **extra})
            assert status == 200, body
            cursor = json.loads(body)["next_cursor"]
        for accept in (CSV, NDJSON):
            ask(f"{base}/results", extra, accept)
    ask(f"{base}/results", {"cursor": "999"})
    return seen


def _delete_redis_records(conn: redis.Redis, batch_id: str) -> None:
    """The batch's own keys (hash, job list, digests, decision indexes) and its jobs' hashes."""
    job_ids = [text(j) for j in conn.lrange(keys.batch_jobs(batch_id), 0, -1)]
    names = [keys.job(j) for j in job_ids] + list(conn.scan_iter(f"{keys.batch(batch_id)}*"))
    assert job_ids and conn.delete(*names) >= len(job_ids) + 2
    assert not conn.exists(keys.batch(batch_id), *[keys.job(j) for j in job_ids])


def _assert_it_expires_with_its_first_job(conn: redis.Redis, batch_id: str) -> None:
    """Once archived, the batch's Redis records go no later than its first job does (its TTL
    ran from when it finished): Redis never serves the batch with jobs missing."""
    job_ids = [text(j) for j in conn.lrange(keys.batch_jobs(batch_id), 0, -1)]
    first_gone = min(conn.pttl(keys.job(j)) for j in job_ids)
    assert 0 < conn.pttl(keys.batch(batch_id)) <= first_gone
    assert 0 < conn.pttl(keys.batch_jobs(batch_id)) <= first_gone


def _sweeper(settings: Settings, conn: redis.Redis, archive_ttl: float) -> Sweeper:
    jobs = JobStore(
        conn,
        result_ttl=settings.result_ttl,
        image_ttl=settings.image_ttl,
        blobs=open_blob_store(settings),
    )
    return Sweeper(
        conn,
        make_celery(settings),
        BatchStore(conn, jobs),
        stale_after=2.0 * settings.visibility_timeout,
        upload_timeout=settings.upload_timeout,
        chunk_size=settings.chunk_size,
        every=0.001,
        image_ttl=settings.image_ttl,
        archive_ttl=archive_ttl,
    )


def _archived(blobs: BlobStore, batch_id: str) -> list[bytes | None]:
    return blobs.get_many([archive_key(batch_id, name) for name in (BATCH, CSV_BLOB, NDJSON_BLOB)])


def test_results_are_served_from_the_archive_after_redis_forgets_the_batch(
    api_url: str,
    inference_worker: WorkerProcess,
    settings: Settings,
    conn: redis.Redis,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    images = distinct_images(tiny_catalog, 5, salt=31)
    files = [("images", (name, data, "image/png")) for name, data in images]
    files.append(("images", ("=broken.png", b"not an image", "image/png")))  # a failed job
    response = http.post(f"{api_url}/v1/batches", files=files, timeout=30)
    assert response.status_code == 202, response.text
    batch_id = response.json()["id"]
    assert wait_for_batch(api_url, batch_id)["status"] == "completed"
    blobs = open_blob_store(settings)
    # By its worker, which takes it off the list last (after writing and shortening TTLs).
    wait_until(lambda: not conn.zscore(keys.UNARCHIVED_BATCHES, batch_id), 20, "the archive")
    assert None not in _archived(blobs, batch_id)
    _assert_it_expires_with_its_first_job(conn, batch_id)
    from_redis = _answers(_via_http(api_url), batch_id)
    _, csv_export = from_redis[(f"/v1/batches/{batch_id}/results", "[]", CSV)]
    assert _archived(blobs, batch_id)[1] == csv_export  # the same bytes the export streams

    # Corrections by ref once the batch's record is gone: its archive maps refs to jobs.
    conn.delete(keys.batch(batch_id))
    (_, skus), *_ = catalog(tiny_catalog).items()
    url = f"{api_url}/v1/batches/{batch_id}/feedback"
    row = {"ref": images[0][0], "sku": skus[0]}
    corrected = http.post(url, json={"items": [row]}, timeout=10)
    assert corrected.status_code == 200 and corrected.json()["recorded"] == 1, corrected.text
    _delete_redis_records(conn, batch_id)
    assert _answers(_via_http(api_url), batch_id) == from_redis
    # Its jobs' records gone too: nothing to correct, row by row.
    gone = http.post(url, json={"items": [row]}, timeout=10).json()
    assert gone["items"][0]["error"]["code"] == "not_found", gone
    other = _via_http(api_url, tenant_session(settings, f"other-{uuid.uuid4().hex[:6]}"))
    for path, accept in [("", JSON), ("/results", JSON), ("/results", CSV), ("/results", NDJSON)]:
        assert other(f"/v1/batches/{batch_id}{path}", {}, accept)[0] == 404

    # Retention: kept within SKUAI_RESULT_ARCHIVE_TTL, deleted past it; on a store of its own
    # (the session's holds other tests' archives, which a 1 s retention would delete).
    own = FileBlobStore(tmp_path / "blobs")
    names = [archive_key(batch_id, name) for name in (BATCH, CSV_BLOB, NDJSON_BLOB)]
    own.put_many(list(zip(names, blobs.get_many(names), strict=True)))  # type: ignore[arg-type]
    assert _sweeper(settings, conn, archive_ttl=3600)._remove_expired_archives(own) == 0
    assert None not in _archived(own, batch_id)
    time.sleep(1.1)
    assert _sweeper(settings, conn, archive_ttl=1)._remove_expired_archives(own) == 3
    assert _archived(own, batch_id) == [None, None, None]
    blobs.delete_many([archive_key(batch_id, BATCH)])  # gone: the API has nothing to serve
    assert http.get(f"{api_url}/v1/batches/{batch_id}", timeout=10).status_code == 404
    assert http.get(f"{api_url}/v1/batches/{batch_id}/results", timeout=10).status_code == 404


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_batch_that_ended_unarchived_is_archived_by_the_sweeper(
    backend: str, own_db: Settings, tiny_catalog: Path, request: pytest.FixtureRequest
) -> None:
    # No worker on this database: nobody archives the batch when it ends, as when its worker
    # dies between completing it and archiving it. It ends canceled, with its results kept.
    settings = own_db
    if backend == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        settings = replace(own_db, blob_url=f"s3://{BUCKET}/archive-{uuid.uuid4().hex[:8]}")
    iso = isolated_app(settings)
    images = [*distinct_images(tiny_catalog, 3, salt=32), ("@bad.png", b"not an image")]
    key = {"Idempotency-Key": f"archive-{uuid.uuid4().hex}"}

    def upload() -> Any:
        files = [(io.BytesIO(data), name) for name, data in images]
        return iso.client.post(
            "/v1/batches", data={"images": files}, content_type="multipart/form-data", headers=key
        )

    response = upload()
    assert response.status_code == 202, response.json
    batch_id = response.json["id"]  # type: ignore[index]
    assert iso.client.post(f"/v1/batches/{batch_id}/cancel").json["status"] == "canceled"  # type: ignore[index]
    blobs = open_blob_store(settings)
    assert iso.conn.zscore(keys.UNARCHIVED_BATCHES, batch_id)  # listed in the step that ended it
    assert _archived(blobs, batch_id) == [None, None, None]

    # A batch listed first whose record cannot be read holds nobody back: it is tried later.
    iso.conn.set(keys.batch("batch_broken"), "not a hash")
    iso.conn.zadd(keys.UNARCHIVED_BATCHES, {"batch_broken": 1})
    assert _sweeper(settings, iso.conn, archive_ttl=3600).sweep().archived == 1
    assert None not in _archived(blobs, batch_id)
    assert iso.conn.zrange(keys.UNARCHIVED_BATCHES, 0, -1) == [b"batch_broken"]
    assert (iso.conn.zscore(keys.UNARCHIVED_BATCHES, "batch_broken") or 0) > time.time()
    iso.conn.delete(keys.batch("batch_broken"))
    iso.conn.zrem(keys.UNARCHIVED_BATCHES, "batch_broken")
    _assert_it_expires_with_its_first_job(iso.conn, batch_id)  # "@bad.png" failed at upload
    from_redis = _answers(_via_client(iso.client), batch_id)
    _delete_redis_records(iso.conn, batch_id)
    assert _answers(_via_client(iso.client), batch_id) == from_redis
    replay = upload()  # its Idempotency-Key outlived the batch's records: the same batch
    assert replay.status_code == 202 and replay.json["id"] == batch_id  # type: ignore[index]
    other = isolated_app(settings, tenant=f"other-{uuid.uuid4().hex[:6]}")
    assert other.client.get(f"/v1/batches/{batch_id}").status_code == 404
    assert other.client.get(f"/v1/batches/{batch_id}/results").status_code == 404


@pytest.fixture()
def image_server(tiny_catalog: Path) -> Iterator[str]:
    """A real HTTP server serving the catalog (tests allow private URLs)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tiny_catalog))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_images_fetched_for_a_url_batch_wait_in_the_blob_store(
    api_url: str,
    inference_worker: WorkerProcess,
    settings: Settings,
    conn: redis.Redis,
    tiny_catalog: Path,
    image_server: str,
) -> None:
    paths = catalog_images(tiny_catalog, 2)
    urls = [f"{image_server}/{p.relative_to(tiny_catalog).as_posix()}" for p in paths]
    body = {"images": [{"url": url} for url in [*urls, f"{image_server}/missing.png"]]}
    response = http.post(f"{api_url}/v1/batches", json=body, timeout=30)
    assert response.status_code == 202, response.text
    done = wait_for_batch(api_url, response.json()["id"])
    assert done["counts"]["succeeded"] == 2 and done["counts"]["failed"] == 1
    job_ids = [item["id"] for item in batch_results(api_url, done["id"])]
    # Kept like an upload's (a rerun reads it there; the sweeper deletes it), never in Redis.
    stored = open_blob_store(settings).get_many([image_key(j) for j in job_ids])
    assert stored == [p.read_bytes() for p in paths] + [None]
    assert not conn.exists(*[keys.image(j) for j in job_ids])
