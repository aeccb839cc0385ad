"""One request's blocking work does not stall the rest of its API worker: an archive unpacks off
gevent's hub (web.blocking), and URL hosts are left for the workers to resolve
(shared.url_guard)."""

from __future__ import annotations

import bz2
import random
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from shared.errors import FetchFailed
from shared.settings import Settings
from tests.support.http import http
from tests.support.isolation import isolated_app
from tests.support.processes import ApiServer, start_api
from worker.fetch import ImageFetcher

MiB = 1024 * 1024
MAX_ARCHIVE_SECONDS = 2.0  # how long the test's archive keeps its request busy
HEALTHZ_WITHIN = 0.5  # seconds /healthz may take meanwhile
URLS = 200


@pytest.fixture(scope="module")
def one_worker_api(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """An API process of one gevent worker that gives up unpacking after 2 s."""
    env = {**service_env, "SKUAI_MAX_ARCHIVE_SECONDS": str(MAX_ARCHIVE_SECONDS)}
    server = start_api(env, tmp_path_factory.mktemp("logs") / "concurrency-api.log", workers=1)
    yield server
    server.stop()


def _slow_archive() -> bytes:
    """A tar.bz2 (5 MiB) whose one member, too large to be an image, is skipped by inflating
    768 MiB: far more than 2 s of bz2 on any core, yet 140 times its size, not a bomb."""
    rng = random.Random(3)
    block = b"".join(rng.randbytes(64) + b"\0" * 500 for _ in range(300))
    chunk = bz2.compress(block * (16 * MiB // len(block)))  # bz2 streams may be concatenated
    repeats = 48
    member = tarfile.TarInfo("big.png")
    member.size = 16 * MiB // len(block) * len(block) * repeats
    return bz2.compress(member.tobuf()) + chunk * repeats + bz2.compress(b"\0" * 10240)


def test_api_answers_while_an_archive_unpacks(one_worker_api: ApiServer) -> None:
    archive = _slow_archive()
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with requests.Session() as session:
            while not done.is_set():
                started = time.monotonic()
                session.get(f"{one_worker_api.url}/healthz", timeout=10).raise_for_status()
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        started = time.monotonic()
        response = http.post(
            f"{one_worker_api.url}/v1/batches",
            files={"archive": ("shoes.tar.bz2", archive)},
            headers={"Idempotency-Key": uuid.uuid4().hex},  # the upload is hashed, too
            timeout=30,
        )
        elapsed = time.monotonic() - started
    finally:
        done.set()
        poller.join()
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "archive_too_slow"
    assert elapsed >= MAX_ARCHIVE_SECONDS
    # Before, one poll waited out the whole unpack (1.95 s of 2).
    assert max(latencies) < HEALTHZ_WITHIN, f"/healthz took {max(latencies):.2f} s"
    assert len(latencies) >= 10, latencies


def test_url_hosts_are_left_to_the_workers_to_resolve(own_db: Settings) -> None:
    # Each host would be a lookup of its own (NXDOMAIN here, a resolver timeout elsewhere).
    client = isolated_app(replace(own_db, allow_private_urls=False)).client
    images = [{"url": f"http://host-{i}.invalid/a.png"} for i in range(URLS)]
    started = time.monotonic()
    response = client.post("/v1/batches", json={"images": images})
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["total"] == URLS
    assert elapsed < 5, f"{URLS} URLs took {elapsed:.1f} s to accept"
    # What needs no DNS is still refused at once.
    for url in ("http://localhost/a.png", "http://2130706433/a.png", "http://[::1]/a.png"):
        refused = client.post("/v1/batches", json={"images": [{"url": url}]})
        assert refused.status_code == 400, (url, refused.get_json())
        assert "private or reserved" in refused.get_json()["error"]["message"]
    refused = client.post("/v1/batches", json={"images": [{"url": "http://a\x00b/a.png"}]})
    assert refused.status_code == 400, refused.get_json()


def test_worker_refuses_a_host_that_resolves_to_a_private_address() -> None:
    # The check at intake no longer resolves names: the one on the connected socket counts.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        fetcher = ImageFetcher(max_bytes=MiB, allow_private=False)
        with pytest.raises(FetchFailed, match="private or reserved"):
            fetcher.fetch(f"http://localhost:{port}/a.png")
