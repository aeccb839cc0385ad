"""The blob store's contract, run against both backends: a folder (file://) and a real S3 server
(SeaweedFS, started by the session's `s3_server` fixture, no mock). Then each way a store refuses:
a read-only folder and a full disk (tmpfs mounts in a private mount namespace, so they work as
root too), an unreachable S3 endpoint, wrong keys, a missing bucket; and what the API answers."""

from __future__ import annotations

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
from pathlib import Path

import pytest
from flask import Flask

from shared.blobs import BlobStore, open_blob_store
from shared.blobs.files import PARTIAL, FileBlobStore
from shared.blobs.s3 import S3BlobStore
from shared.blobs.url import S3Location, parse_blob_url
from shared.errors import (
    BlobStoreFull,
    BlobStoreUnavailable,
    ConfigError,
    InvalidArgument,
)
from shared.settings import Settings
from tests.support.s3_server import BUCKET, S3Server, free_ports
from web.errors import register_error_handlers

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
