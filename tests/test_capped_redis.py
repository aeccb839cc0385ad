"""Image bytes stay out of Redis: a Redis capped far below one batch's images (its own server,
`maxmemory` with noeviction) still takes the whole batch through the HTTP API, on the file blob
store and on the session's real S3 server. Every image gets exactly one result, and Redis' peak
memory stays under the cap and far below the images' bytes. Issue 19's full size (64 MB, 2,000
JPEGs of 150 KB) runs as docs/experiments/capped_redis.py; this is the same run, scaled down."""

from __future__ import annotations

import time
import uuid

import pytest

from shared.blobs import open_blob_store
from shared.settings import Settings
from tests.support.capped_redis import (
    MB,
    Backend,
    BatchRun,
    capped_stacks,
    noise_jpegs,
    run_batch,
)
from tests.support.s3_server import BUCKET, S3Server

IMAGES = 300  # of about 150 KB: about 43 MB, over five times the cap
MAXMEMORY = 8 * MB


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """The batch: distinct noise JPEGs of about 150 KB."""
    return noise_jpegs(IMAGES, 150_000, seed=19)


@pytest.fixture(scope="module")
def capped_runs(
    jpegs: list[bytes],
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[BatchRun, int]]:
    """The batch through a stack on a capped Redis for each backend (the stacks start
    together); what each run measured, and how many images its blob store holds after it."""
    folder = tmp_path_factory.mktemp("capped")
    backends = {
        "file": Backend(folder / "file", service_env),
        "s3": Backend(
            folder / "s3",
            {**service_env, **s3_server.env()},
            f"s3://{BUCKET}/capped-{uuid.uuid4().hex[:8]}",
        ),
    }
    with capped_stacks(settings, trained, backends, maxmemory=MAXMEMORY) as stacks:
        runs = {name: run_batch(stack, jpegs, timeout=240) for name, stack in stacks.items()}
    stored = {}
    with pytest.MonkeyPatch.context() as env:  # for this process's own look at the bucket
        for name, value in s3_server.env().items():
            env.setenv(name, value)
        for name, backend in backends.items():
            url = backend.blob_url or (backend.folder / "home" / "blobs").as_uri()
            store = open_blob_store(Settings(home=backend.folder, blob_url=url))
            # Classified images stay in the store until the sweeper's pass, minutes later.
            stored[name] = len(store.older_than(time.time() + 60, 2 * IMAGES, "images/"))
    return {name: (runs[name], stored[name]) for name in backends}


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_batch_far_over_the_redis_cap_completes_with_one_result_each(
    capped_runs: dict[str, tuple[BatchRun, int]], backend: str
) -> None:
    run, stored = capped_runs[backend]
    assert run.image_bytes > 5 * MAXMEMORY  # the images could never have fitted in Redis
    assert run.maxmemory == MAXMEMORY
    assert run.upload_status == 202
    assert run.counts["succeeded"] == IMAGES, run.counts
    assert run.counts["failed"] == 0
    assert sorted(r["ref"] for r in run.results) == sorted(f"{i}.jpg" for i in range(IMAGES))
    assert len({r["id"] for r in run.results}) == IMAGES
    assert all(r["status"] == "succeeded" and r["result"] for r in run.results)
    assert stored == IMAGES  # the bytes went to the blob store...
    assert run.peak < MAXMEMORY  # ...not into Redis:
    assert run.peak - run.used_before < run.image_bytes / 10  # its records only
