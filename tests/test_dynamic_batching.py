"""Dynamic batching: a burst of single-image jobs is served in fewer forward passes than jobs,
and single jobs taken by a vanished worker come back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from shared.settings import Settings
from shared.singles import SinglesQueue
from tests.support import metrics
from tests.support.http import http
from tests.support.images import sample_image


@pytest.mark.usefixtures("inference_worker")
def test_a_burst_of_single_jobs_shares_forward_passes(api_url: str, tiny_catalog: Path) -> None:
    data = sample_image(tiny_catalog).read_bytes()
    before = metrics.samples(requests.get(f"{api_url}/metrics", timeout=10).text)

    def one(i: int) -> str:
        files = {"image": (f"{i}.png", data + i.to_bytes(2, "big"))}
        job = http.post(f"{api_url}/v1/jobs", files=files, timeout=10).json()
        return str(http.get(f"{api_url}/v1/jobs/{job['id']}?wait=30", timeout=40).json()["status"])

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(one, range(40)))
    assert statuses == ["succeeded"] * 40
    after = metrics.samples(requests.get(f"{api_url}/metrics", timeout=10).text)
    passes = metrics.value(after, "skuai_inference_batch_size_count") - metrics.value(
        before, "skuai_inference_batch_size_count"
    )
    images = metrics.value(after, "skuai_inference_batch_size_sum") - metrics.value(
        before, "skuai_inference_batch_size_sum"
    )
    assert images == 40
    assert passes < 40, f"{passes} forward passes for 40 jobs"


def test_leases_of_a_vanished_worker_come_back(own_db: Settings) -> None:
    conn = redis.Redis.from_url(own_db.redis_url)
    line = SinglesQueue(conn, lease_seconds=0.2)
    for job_id in ("a", "b", "c"):
        line.push(job_id)
    assert line.take(2) == ["a", "b"]
    assert line.reclaim() == 0  # still leased
    time.sleep(0.3)
    assert line.reclaim() == 2  # the worker never released them
    assert line.take(10) == ["c", "a", "b"]
    line.release(["c", "a", "b"])
    time.sleep(0.3)
    assert line.reclaim() == 0
