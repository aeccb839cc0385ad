"""Intake under attack: archive bombs cut off within seconds (skipped members are counted), the
Idempotency-Key refused with another body or when too long, and SKUAI_MAX_QUEUED exact under
concurrent batches — against the real API process on a Redis database of its own."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import defaults, keys
from shared.admission import Admission
from shared.api_keys import KeyStore
from shared.errors import PayloadTooLarge, TooManyRequests
from shared.settings import Settings
from tests.support.images import catalog_images
from tests.support.processes import ApiServer, start_api
from tests.support.redis_databases import RedisDatabases
from web.archives import ArchiveLimits, UnpackClock, iter_archive

MiB = 1024 * 1024
DEFAULT_LIMITS = ArchiveLimits(
    defaults.MAX_BATCH_IMAGES, defaults.MAX_IMAGE_BYTES, defaults.MAX_ARCHIVE_BYTES
)
SMALL = ArchiveLimits(max_entries=10, max_entry_bytes=1 * MiB, max_total_bytes=2 * MiB)
MAX_QUEUED = 50


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(format=tarfile.GNU_FORMAT) + data + b"\0" * (-len(data) % 512)


def tar_bomb(compress: Callable[[bytes], bytes], declared: int = 2 * 1024**3) -> bytes:
    """A compressed tar whose first member declares `declared` bytes of zeros, then a real
    member: the zeros are one small compressed stream repeated (bz2, gzip and xz readers all
    read concatenated streams), so the bomb is built in well under a second."""
    big = tarfile.TarInfo("big.png")
    big.size = declared
    chunk = 8 * MiB
    zeros = compress(b"\0" * chunk)
    return (
        compress(big.tobuf(format=tarfile.GNU_FORMAT))
        + zeros * (declared // chunk)
        + compress(_member("ok.png", b"png") + b"\0" * 1024)
    )


def _tar(*members: bytes) -> io.BytesIO:
    return io.BytesIO(b"".join(members) + b"\0" * 1024)


def _codes(stream: io.BytesIO, limits: ArchiveLimits) -> list[str | None]:
    return [(e.error or {}).get("code") for e in iter_archive(stream, limits)]


@pytest.mark.parametrize(
    "compress",
    [bz2.compress, gzip.compress, lambda data: lzma.compress(data, preset=0)],
    ids=["bz2", "gzip", "xz"],
)
def test_tar_bomb_is_cut_off_within_seconds(compress: Callable[[bytes], bytes]) -> None:
    bomb = io.BytesIO(tar_bomb(compress))
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge) as refused:
        list(iter_archive(bomb, DEFAULT_LIMITS))
    assert refused.value.code == "archive_bomb"
    assert time.monotonic() - started < 5  # the whole 2 GiB took 9-10 s before


@pytest.mark.parametrize(
    "skipped",
    [_member("inner.zip", os.urandom(3 * MiB)), _member("huge.png", os.urandom(3 * MiB))],
    ids=["nested-archive", "over-the-entry-limit"],
)
def test_skipped_members_count_toward_the_archive_bytes(skipped: bytes) -> None:
    with pytest.raises(PayloadTooLarge, match="expands to more than 2097152 bytes"):
        _codes(_tar(skipped, _member("ok.png", b"png")), SMALL)


def test_oversized_extended_header_is_refused_before_it_is_read() -> None:
    # tarfile would read the whole pax header into memory before parsing it
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, 64 * MiB
    with pytest.raises(PayloadTooLarge, match="extended header of 67108864 bytes"):
        _codes(_tar(pax.tobuf(format=tarfile.USTAR_FORMAT)), DEFAULT_LIMITS)


def test_unpacking_time_is_bounded_across_the_archives_of_a_request() -> None:
    # bz2 of random bytes is the slowest to unpack (about 20 MB/s) and does not look like a bomb
    data = bz2.compress(_member("a.png", random.Random(1).randbytes(MiB)) + b"\0" * 1024)
    limits = ArchiveLimits(10, 2 * MiB, 10 * MiB, max_seconds=60)
    clock = UnpackClock(0.2)
    with pytest.raises(PayloadTooLarge) as refused:
        for _ in range(40):  # one request's archives share one clock
            list(iter_archive(io.BytesIO(data), limits, clock))
    assert refused.value.code == "archive_too_slow"
    assert "0.2 s" in refused.value.message


def test_overlapping_zip_entries_are_cut_off() -> None:
    # Every central directory entry points at the same 8 MiB member (ratio ~130, below the
    # per-entry limit): the whole archive expanding over 200 times its size is the bomb.
    rng = random.Random(2)
    block = b"".join(rng.randbytes(16) + b"\0" * 3000 for _ in range(100))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.png", block * (8 * MiB // len(block)))
        archive.filelist += [archive.filelist[0]] * 30
    limits = ArchiveLimits(100, 10 * MiB, 1024 * MiB)
    started = time.monotonic()
    with pytest.raises(PayloadTooLarge) as refused:
        _codes(io.BytesIO(buffer.getvalue()), limits)
    assert refused.value.code == "archive_bomb"
    assert time.monotonic() - started < 3


def test_zip_listing_more_members_than_allowed_is_refused_before_it_is_parsed() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(31):  # 3 members per entry allowed; folders and macOS forks are not entries
            archive.writestr(f"__MACOSX/._{i}.png", b"")
    with pytest.raises(PayloadTooLarge, match="lists more than 30 members"):
        _codes(buffer, SMALL)


def test_tar_listing_more_members_than_allowed_is_refused() -> None:
    folders = []
    for i in range(31):
        info = tarfile.TarInfo(f"folder{i}")
        info.type = tarfile.DIRTYPE
        folders.append(info.tobuf(format=tarfile.GNU_FORMAT))
    with pytest.raises(PayloadTooLarge, match="lists more than 30 members"):
        _codes(_tar(*folders), SMALL)


# --- against the real API -------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(
    redis_databases: RedisDatabases,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ApiServer, dict[str, str], redis.Redis]]:
    """An API process with SKUAI_MAX_QUEUED=50 on a Redis database of this module's own that no
    worker consumes; its URL, the headers of a key of its own, and a client of that database."""
    with redis_databases.lend() as url:
        conn = redis.Redis.from_url(url)
        env = {**service_env, "SKUAI_REDIS_URL": url, "SKUAI_MAX_QUEUED": str(MAX_QUEUED)}
        server = start_api(env, tmp_path_factory.mktemp("logs") / "limited-api.log")
        headers = {"Authorization": f"Bearer {KeyStore(conn).create('hardening')}"}
        yield server, headers, conn
        server.stop()
        conn.close()


def _pngs(catalog: Path, n: int) -> list[tuple[str, tuple[str, bytes]]]:
    return [("images", (p.name, p.read_bytes())) for p in catalog_images(catalog, n)]


def test_archive_bomb_is_413_within_seconds(limited: tuple) -> None:
    server, headers, _ = limited
    bomb = tar_bomb(bz2.compress)
    assert len(bomb) < 16 * 1024  # the report's bomb was 8.8 KB
    started = time.monotonic()
    response = requests.post(
        f"{server.url}/v1/batches",
        files={"archive": ("shoes.tar.bz2", bomb)},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "archive_bomb"
    assert time.monotonic() - started < 5


def test_reused_idempotency_key_with_another_body_is_422(
    limited: tuple, tiny_catalog: Path
) -> None:
    server, headers, conn = limited
    conn.delete(keys.PENDING_IMAGES)
    first_files, other_files = _pngs(tiny_catalog, 2)[:1], _pngs(tiny_catalog, 2)[1:]
    keyed = {**headers, "Idempotency-Key": f"order-{time.time_ns()}"}

    def post(files: list, extra: dict[str, str] | None = None) -> requests.Response:
        return requests.post(
            f"{server.url}/v1/batches", files=files, headers={**keyed, **(extra or {})}, timeout=30
        )

    first = post(first_files)
    assert first.status_code == 202, first.text
    other = post(other_files)
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    replay = post(first_files)  # a new multipart boundary, the same request
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    refs = requests.get(f"{server.url}/v1/batches/{first.json()['id']}/results", headers=headers)
    assert [i["ref"] for i in refs.json()["items"]] == [first_files[0][1][0]]


def test_idempotency_key_over_255_characters_is_400(limited: tuple, tiny_catalog: Path) -> None:
    server, headers, _ = limited
    response = requests.post(
        f"{server.url}/v1/batches",
        files=_pngs(tiny_catalog, 1),
        headers={**headers, "Idempotency-Key": "k" * 256},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "bad_request",
        "message": "Idempotency-Key is 256 characters long; at most 255 are accepted",
    }


def _upload_concurrently(
    server: ApiServer, headers: dict[str, str], conn: redis.Redis, uploads: list[Any]
) -> tuple[list[requests.Response], int]:
    """POST each upload at once; the responses, and the most images ever counted as waiting."""
    conn.set(keys.PENDING_IMAGES, 0)
    responses: list[requests.Response] = []
    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], int(conn.get(keys.PENDING_IMAGES) or 0))
            time.sleep(0.002)

    def upload(files: Any) -> None:
        responses.append(
            requests.post(f"{server.url}/v1/batches", files=files, headers=headers, timeout=60)
        )

    watcher = threading.Thread(target=watch)
    threads = [threading.Thread(target=upload, args=(files,)) for files in uploads]
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    return responses, peak[0]


def test_queue_limit_is_exact_under_concurrent_batches(limited: tuple, tiny_catalog: Path) -> None:
    server, headers, conn = limited
    files = _pngs(tiny_catalog, 40)  # three of these overshot a limit of 50 before
    responses, peak = _upload_concurrently(server, headers, conn, [files] * 3)
    statuses = sorted(r.status_code for r in responses)
    # Each batch reserves its 40 places at once: one fits whole, the others are refused whole.
    assert statuses == [202, 429, 429], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) > 0
    assert peak <= MAX_QUEUED, peak
    assert int(conn.get(keys.PENDING_IMAGES) or 0) == 40  # refused batches gave theirs back
    assert conn.hlen(keys.QUEUE_RESERVATIONS) == 0  # and the accepted one its unused ones


def test_queue_limit_is_exact_under_concurrent_archives(limited: tuple, tiny_catalog: Path) -> None:
    server, headers, conn = limited
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, (_, (name, data)) in enumerate(_pngs(tiny_catalog, 40)):
            archive.writestr(f"{i}-{name}", data)
    upload = {"archive": ("shoes.zip", buffer.getvalue())}
    responses, peak = _upload_concurrently(server, headers, conn, [upload] * 3)
    statuses = sorted(r.status_code for r in responses)
    accepted = sum(r.json()["total"] for r in responses if r.status_code == 202)
    # Entries reserve one at a time (their number is known only once read): never over the limit
    assert 429 in statuses and set(statuses) <= {202, 429}, statuses
    assert peak <= MAX_QUEUED and accepted <= MAX_QUEUED, (peak, accepted)
    assert int(conn.get(keys.PENDING_IMAGES) or 0) == accepted
    assert conn.hlen(keys.QUEUE_RESERVATIONS) == 0


def test_an_upload_whose_process_died_gives_its_places_back(own_db: Settings) -> None:
    conn = redis.Redis.from_url(own_db.redis_url)
    admission = Admission(conn, rate=1.0, burst=1, max_queued=MAX_QUEUED)
    admission.reserve(MAX_QUEUED, "bat_died", ttl=0.3)  # and its API process is killed here
    with pytest.raises(TooManyRequests):
        admission.reserve(1, "bat_next")
    time.sleep(0.4)
    admission.reserve(MAX_QUEUED, "bat_next")
    admission.release("bat_next")
    assert conn.hlen(keys.QUEUE_RESERVATIONS) == 0 and conn.zcard(keys.QUEUE_RESERVATIONS_DUE) == 0
