"""The decode pool: sized to the cores a worker may use (or SKUAI_DECODE_THREADS), spread over
its threads, and a real worker's chunk of good and bad images gives one result per image."""

from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.errors import FetchFailed
from shared.settings import Settings
from tests.support.images import catalog_images
from tests.support.isolation import Isolated, OwnWorkers, isolated_app
from tests.support.polling import wait_until
from training.cascade import MAX_PASS
from worker.decode_pool import DecodePool, decode_threads

CHUNK = MAX_PASS + 8  # two passes: the second is decoded while the model runs the first


def _truncated(data: bytes) -> bytes:
    """A PNG whose header passes the API's check but whose pixels end early."""
    return data[: len(data) * 2 // 3]


def _get(iso: Isolated, url: str) -> dict[str, Any]:
    return dict(json.loads(iso.client.get(url).data))


def test_the_pool_has_a_thread_per_usable_core_unless_set() -> None:
    assert decode_threads(0) == len(os.sched_getaffinity(0))
    assert decode_threads(3) == 3


def test_a_pass_is_spread_over_the_threads_and_keeps_its_order(tiny_catalog: Path) -> None:
    good = [p.read_bytes() for p in catalog_images(tiny_catalog, 7)]
    data: list[bytes | FetchFailed] = [*good[:3], b"", *good[3:], FetchFailed("gone")]
    before = set(threading.enumerate())
    pool = DecodePool(3)
    try:
        decoded = pool.submit(list(range(9)), data, size=32, max_pixels=10**6).result()
        started = [t for t in set(threading.enumerate()) - before if t.name.startswith("decode")]
    finally:
        pool.close()
    assert len(started) == 3
    assert decoded.ready == [0, 1, 2, 4, 5, 6, 7]
    assert [p.shape for p in decoded.pixels] == [(32, 32, 3)] * 7
    assert [(i, e["code"]) for i, e in decoded.failures] == [
        (3, "invalid_image"),
        (8, "fetch_failed"),
    ]


def test_a_chunk_of_good_and_bad_images_gives_one_result_each(
    own_db: Settings, own_workers: OwnWorkers, tiny_catalog: Path, trained: str
) -> None:
    iso = isolated_app(replace(own_db, chunk_size=CHUNK))
    log = own_workers.start(
        iso, "decoding", trained, SKUAI_CHUNK_SIZE=str(CHUNK), SKUAI_DECODE_THREADS="3"
    ).log
    sources = catalog_images(tiny_catalog)
    files = [sources[i % len(sources)].read_bytes() + i.to_bytes(4, "big") for i in range(CHUNK)]
    bad = {1, MAX_PASS - 1, MAX_PASS + 2}  # in both passes
    for i in bad:
        files[i] = _truncated(files[i])
    images = [(io.BytesIO(data), f"{i}.png") for i, data in enumerate(files)]
    answer = iso.client.post(
        "/v1/batches", data={"images": images}, content_type="multipart/form-data"
    )
    batch: dict[str, Any] = json.loads(answer.data)
    assert batch["counts"]["queued"] == CHUNK, batch
    url = f"/v1/batches/{batch['id']}"
    wait_until(lambda: _get(iso, url)["status"] == "completed", 60, "the batch", log)
    items = _get(iso, f"{url}/results?limit=100")["items"]
    status = {int(str(i["ref"]).removesuffix(".png")): i["status"] for i in items}
    assert sorted(status) == list(range(CHUNK))  # one result per image
    assert {i for i, s in status.items() if s == "failed"} == bad
    assert all(s == "succeeded" for i, s in status.items() if i not in bad)
    text = log.read_text()
    assert "decoding images on 3 threads" in text
    assert f"chunk of {CHUNK}: {CHUNK - len(bad)} succeeded, {len(bad)} failed" in text
