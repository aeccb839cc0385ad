"""The blob store's contract, run against both backends: a folder (file://) and a real S3 server
(SeaweedFS, started by the session's `s3_server` fixture, no mock). Then each way a store refuses:
a read-only folder and a full disk (tmpfs mounts in a private mount namespace, so they work as
root too), an unreachable S3 endpoint, wrong keys, a missing bucket; and what the API answers."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from shared import keys
from shared.batch_store import BatchStore
from shared.blobs import BlobStore, open_blob_store
from shared.blobs.files import PARTIAL, FileBlobStore
from shared.blobs.s3 import S3BlobStore
from shared.blobs.store import image_key
from shared.blobs.url import S3Location, parse_blob_url
from shared.errors import (
    BlobStoreFull,
    BlobStoreUnavailable,
    ConfigError,
    InvalidArgument,
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
from tests.support.s3_server import BUCKET, S3Server, free_ports
from web.errors import register_error_handlers
from worker.sweeper import Sweeper

ROOT = Path(__file__).resolve().parents[1]
QUICK = 3.0  # seconds within which a refused request must be answered (timeout 0.5 s, 2 tries)


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """An empty store of each backend (on S3: a prefix of this test's own in the bucket)."""
    if request.param == "file":
        yield FileBlobStore(tmp_path / "blobs")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    yield S3BlobStore(S3Location(BUCKET, f"t-{uuid.uuid4().hex}/"), timeout=2)


def test_round_trip_keeps_bytes_and_order(store: BlobStore) -> None:
    blobs = {f"job_{i}": os.urandom(size) for i, size in enumerate([0, 1, 1000, 300_000])}
    store.put_many(blobs.items())
    keys = ["job_3", "job_missing", "job_0", "job_2", "job_1"]
    assert store.get_many(keys) == [blobs.get(key) for key in keys]
    assert store.get("job_2") == blobs["job_2"]


def test_a_missing_key_reads_as_none(store: BlobStore) -> None:
    assert store.get("job_never_written") is None
    assert store.get_many([]) == []


def test_writing_a_key_again_replaces_it(store: BlobStore) -> None:
    store.put("job_a", b"first")
    store.put("job_a", b"second")
    assert store.get("job_a") == b"second"


def test_delete_removes_only_the_keys_given(store: BlobStore) -> None:
    store.put_many([("job_a", b"a"), ("job_b", b"b"), ("job_c", b"c")])
    store.delete_many(["job_a", "job_c", "job_not_there"])
    assert store.get_many(["job_a", "job_b", "job_c"]) == [None, b"b", None]
    store.delete("job_b")
    store.delete("job_b")  # again: not an error
    assert store.get("job_b") is None


def test_keys_with_folders_round_trip_and_list(store: BlobStore) -> None:
    store.put("results/batch_1.ndjson", b"{}\n")
    assert store.get("results/batch_1.ndjson") == b"{}\n"
    assert store.older_than(time.time() + 60, 10) == ["results/batch_1.ndjson"]


def test_older_than_lists_only_blobs_written_before_the_cutoff(store: BlobStore) -> None:
    store.put_many([("job_old1", b"1"), ("job_old2", b"2")])
    # S3 keeps LastModified in whole seconds: the cutoff is the next second, the new blob after it.
    cutoff = math.ceil(time.time())
    time.sleep(cutoff - time.time() + 0.05)
    store.put("job_new", b"3")
    assert sorted(store.older_than(cutoff, 100)) == ["job_old1", "job_old2"]
    assert len(store.older_than(cutoff, 1)) == 1
    assert store.older_than(cutoff - 3600, 100) == []
    assert sorted(store.older_than(time.time() + 60, 100)) == ["job_new", "job_old1", "job_old2"]


def test_list_old_pages_through_every_blob_once(store: BlobStore) -> None:
    names = [f"images/job_{i}" for i in range(7)]
    store.put_many([(name, b"x") for name in names] + [("results/r", b"r")])
    cutoff = time.time() + 60
    seen: list[str] = []
    cursor = ""
    while page := store.list_old(cutoff, 3, "images/", cursor):
        assert all(written < cutoff for _, written in page)
        seen += [key for key, _ in page]
        cursor = page[-1][0]
    assert sorted(seen) == names  # each once, in pages of three, nothing outside the prefix
    store.delete(seen[0])  # a cursor whose blob is gone still works
    assert [k for k, _ in store.list_old(cutoff, 10, "images/", seen[0])] == seen[1:]


def test_unsafe_keys_are_refused_before_any_io(store: BlobStore) -> None:
    for key in ["", "../etc/passwd", "/abs", "a/../b", ".hidden", "a//b", "a b", "x" * 513]:
        with pytest.raises(InvalidArgument):
            store.put(key, b"x")
        with pytest.raises(InvalidArgument):
            store.get_many([key])


def test_a_healthy_store_passes_its_check(store: BlobStore) -> None:
    store.check()


# --- the file backend ---------------------------------------------------------------------------


def test_files_are_sharded_and_written_whole(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put_many((f"job_{i}", b"x") for i in range(50))
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 50
    assert all(len(p.relative_to(tmp_path / "blobs").parts) == 3 for p in files)  # aa/bb/key
    assert len({p.parent for p in files}) > 40  # spread out, not one folder
    assert list((tmp_path / "blobs" / PARTIAL).iterdir()) == []  # no leftovers of the writes


def test_older_than_also_clears_writes_abandoned_mid_way(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.check()  # makes .partial/
    stale = tmp_path / "blobs" / PARTIAL / "dead.tmp"
    fresh = tmp_path / "blobs" / PARTIAL / "writing.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert store.older_than(time.time() - 60, 10) == []  # partials are never keys
    assert not stale.exists()
    assert fresh.exists()


def test_a_refused_batch_of_writes_leaves_none_of_its_blobs(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    blocked = store._path("job_b")  # its shard folder cannot be made: a file is in the way
    blocked.parent.parent.mkdir(parents=True)
    blocked.parent.write_bytes(b"")
    with pytest.raises(BlobStoreUnavailable) as refused:
        store.put_many([("job_a", b"a"), ("job_b", b"b")])
    assert not isinstance(refused.value, BlobStoreFull)
    assert store.get("job_a") is None
    assert list((tmp_path / "blobs" / PARTIAL).iterdir()) == []


def _namespace_prefix() -> list[str] | None:
    """How this machine lets a process mount a tmpfs of its own: unshare as root, or in a user
    namespace; None where neither is allowed."""
    if not shutil.which("unshare"):
        return None
    for prefix in (["unshare", "--mount"], ["unshare", "--mount", "--map-root-user"]):
        probe = subprocess.run(
            [*prefix, "mount", "-t", "tmpfs", "tmpfs", "/mnt"], check=False, capture_output=True
        )
        if probe.returncode == 0:
            return prefix
    return None


NAMESPACE = _namespace_prefix()
STORE_IN_A_MOUNT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from shared.blobs.files import FileBlobStore
    from shared.errors import BlobStoreUnavailable
    root, size, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    store = FileBlobStore(root)
    try:
        store.put_many((f"job_{i}", b"x" * size) for i in range(count))
        outcome = {"error": None}
    except BlobStoreUnavailable as exc:
        outcome = {"error": type(exc).__name__, "status": exc.http_status, "message": exc.message}
    outcome["files"] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    print(json.dumps(outcome))
    """
)


def _store_on_tmpfs(options: str, size: int, count: int, folder: Path) -> dict:
    """Write `count` blobs of `size` bytes into a tmpfs mounted with `options` (a mount only the
    child process sees); what happened, and the files left."""
    assert NAMESPACE is not None
    folder.mkdir()
    script = (
        f'mount -t tmpfs -o {options} tmpfs "$1" && '
        f'exec "{sys.executable}" -c "$2" "$1" {size} {count}'
    )
    done = subprocess.run(
        [*NAMESPACE, "sh", "-c", script, "sh", str(folder), STORE_IN_A_MOUNT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(NAMESPACE is None, reason="needs unshare to mount a tmpfs (mount namespace)")
def test_a_read_only_folder_is_a_503(tmp_path: Path) -> None:
    outcome = _store_on_tmpfs("ro", 10, 1, tmp_path / "ro")
    assert outcome["error"] == "BlobStoreUnavailable"
    assert outcome["status"] == 503
    assert "Read-only file system" in outcome["message"]
    assert str(tmp_path) not in outcome["message"]  # paths stay in the log


@pytest.mark.skipif(NAMESPACE is None, reason="needs unshare to mount a tmpfs (mount namespace)")
def test_a_full_disk_is_a_507_and_leaves_nothing_behind(tmp_path: Path) -> None:
    outcome = _store_on_tmpfs("size=256k", 60_000, 10, tmp_path / "full")
    assert outcome["error"] == "BlobStoreFull"
    assert outcome["status"] == 507
    assert outcome["files"] == []  # the blobs written before the disk filled were removed


# --- the S3 backend -----------------------------------------------------------------------------


def _s3_store(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], bucket: str = BUCKET
) -> S3BlobStore:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return S3BlobStore(S3Location(bucket, "t/"), timeout=0.5)


def test_an_unreachable_s3_endpoint_is_a_503_quickly(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    (closed,) = free_ports(1)
    store = _s3_store(
        monkeypatch, {**s3_server.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}
    )
    for attempt in (
        lambda: store.put_many([("job_a", b"a"), ("job_b", b"b")]),
        lambda: store.get_many(["job_a"]),
        lambda: store.delete_many(["job_a"]),
        lambda: store.older_than(time.time(), 10),
        store.check,
    ):
        started = time.monotonic()
        with pytest.raises(BlobStoreUnavailable) as refused:
            attempt()
        assert time.monotonic() - started < QUICK
        assert refused.value.http_status == 503
        assert "EndpointConnectionError" in refused.value.message


def test_wrong_keys_and_a_missing_bucket_are_503s(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = _s3_store(monkeypatch, {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    with pytest.raises(BlobStoreUnavailable, match=r"SignatureDoesNotMatch|AccessDenied"):
        wrong.put("job_a", b"a")
    missing = _s3_store(monkeypatch, s3_server.env(), bucket="no-such-bucket")
    with pytest.raises(BlobStoreUnavailable):
        missing.check()


def test_objects_sit_under_the_prefix(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _s3_store(monkeypatch, s3_server.env())
    store.put("job_prefixed", b"p")
    client = s3_server.client()
    body = client.get_object(Bucket=BUCKET, Key="t/job_prefixed")["Body"].read()  # type: ignore[attr-defined]
    assert body == b"p"
    store.delete("job_prefixed")


# --- settings and the API -----------------------------------------------------------------------


def test_the_default_store_is_a_folder_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    store = open_blob_store(settings)
    assert isinstance(store, FileBlobStore)
    assert store.root == tmp_path / "blobs"
    store.put("job_a", b"a")
    assert (tmp_path / "blobs").is_dir()


def test_an_s3_url_opens_the_s3_backend(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env({"SKUAI_BLOB_URL": f"s3://{BUCKET}/from/settings"})
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    assert store.describe() == f"s3://{BUCKET}/from/settings/"
    store.put("job_s", b"s")
    assert store.get("job_s") == b"s"
    store.delete("job_s")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://host/x", "expected file:///absolute/path or s3://bucket[/prefix]"),
        ("file://relative/x", "absolute path"),
        ("s3://Not_A_Bucket/p", "'Not_A_Bucket' is not a bucket name"),
        ("s3://minio:9000/p", "AWS_ENDPOINT_URL"),
        ("s3://key:secret@bucket/p", "AWS_ACCESS_KEY_ID"),
        ("s3://bucket/a/../b", "the prefix"),
    ],
)
def test_a_malformed_blob_url_is_one_clear_line(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"SKUAI_BLOB_URL": url})
    message = str(refused.value)
    assert message.startswith("SKUAI_BLOB_URL=")
    assert says in message
    assert "\n" not in message
    assert "secret" not in message


def test_a_malformed_endpoint_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url")
    with pytest.raises(ConfigError, match="cannot make an S3 client"):
        S3BlobStore(parse_blob_url("s3://bucket/p"), timeout=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (
            BlobStoreUnavailable("the blob store cannot write to its bucket"),
            503,
            "service_unavailable",
        ),
        (BlobStoreFull("the blob store is full"), 507, "insufficient_storage"),
    ],
)
def test_the_api_answers_a_refusal_with_retry_after(
    error: BlobStoreUnavailable, status: int, code: str
) -> None:
    app = Flask("blob-refusal")
    register_error_handlers(app)

    @app.post("/upload")
    def upload() -> str:
        raise error

    response = app.test_client().post("/upload")
    assert response.status_code == status
    assert response.headers["Retry-After"] == "5"
    assert response.get_json() == {"error": {"code": code, "message": error.message}}


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
