"""Image bytes stay out of Redis: a Redis capped far below one batch's images (`maxmemory`,
noeviction) still takes the whole batch through the HTTP API, on the file blob store and on the
session's real S3 server. Every image gets exactly one result, its bytes are in the blob store,
and Redis' peak memory stays under the cap and far below the images' bytes. Issue 19's full size
(64 MB, 2,000 JPEGs of 150 KB) runs as docs/experiments/capped_redis.py; this is the same run,
scaled down.

To stay cheap, the file store's run is the session's own API and inference worker, with the
session Redis capped at what it holds plus CAP while the batch runs (its peak is watched, as its
lifetime peak is older). The S3 store needs a stack of its own: one Redis capped at CAP, one API,
one worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.blobs import open_blob_store
from shared.blobs.store import image_key
from shared.settings import Settings
from tests.support.capped_redis import (
    MB,
    Backend,
    BatchRun,
    CappedStack,
    capped_for_now,
    capped_stacks,
    noise_jpegs,
    run_batch,
)
from tests.support.s3_server import BUCKET, S3Server

IMAGES = 120  # of about 200 KB: about 23 MB, over five times the cap
CAP = 4 * MB  # Redis' own room for the batch: its records (about 3 KB a job) fit many times


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """The batch: distinct noise JPEGs of about 200 KB."""
    return noise_jpegs(IMAGES, 200_000, seed=19)


@pytest.fixture(scope="module")
def s3_env(s3_server: S3Server) -> Iterator[None]:
    """This process's environment with the S3 server's variables, to look at the bucket."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3_server.env().items():
            env.setenv(name, value)
        yield


def _stored(settings: Settings, run: BatchRun, jpegs: list[bytes]) -> list[bool]:
    """For each result, whether the blob store holds its image's bytes (a classified image stays
    until the sweeper's pass, minutes later)."""
    store = open_blob_store(settings)
    held = store.get_many([image_key(r["id"]) for r in run.results])
    sent = [jpegs[int(r["ref"].removesuffix(".jpg"))] for r in run.results]
    return [data == image for data, image in zip(held, sent, strict=True)]


@pytest.fixture(scope="module")
def file_run(
    jpegs: list[bytes], settings: Settings, api_url: str, api_key: str, inference_worker: object
) -> tuple[BatchRun, list[bool]]:
    """The batch through the session's stack (file store), its Redis capped meanwhile."""
    stack = CappedStack(settings.redis_url, api_url, {"Authorization": f"Bearer {api_key}"}, True)
    with capped_for_now(settings.redis_url, CAP):
        run = run_batch(stack, jpegs, timeout=120)
    return run, _stored(settings, run, jpegs)


@pytest.fixture(scope="module")
def s3_run(
    jpegs: list[bytes],
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    s3_server: S3Server,
    s3_env: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[BatchRun, list[bool]]:
    """The batch through a stack of its own on a Redis capped at CAP, storing in S3."""
    folder = tmp_path_factory.mktemp("capped")
    url = f"s3://{BUCKET}/capped-{uuid.uuid4().hex[:8]}"
    backend = Backend(folder, {**service_env, **s3_server.env()}, url)
    with capped_stacks(settings, trained, {"s3": backend}, maxmemory=CAP) as stacks:
        run = run_batch(stacks["s3"], jpegs, timeout=120)
    own = Settings(home=folder, blob_url=url)
    return run, _stored(own, run, jpegs)


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_a_batch_far_over_the_redis_cap_completes_with_one_result_each(
    request: pytest.FixtureRequest, jpegs: list[bytes], backend: str
) -> None:
    run, stored = request.getfixturevalue(f"{backend}_run")
    assert run.image_bytes > 5 * CAP  # the images could never have fitted in Redis
    assert run.maxmemory <= run.used_before + CAP
    assert run.used_before < run.maxmemory - CAP / 2  # Redis had room for the batch's records
    assert run.upload_status == 202
    assert run.counts["succeeded"] == IMAGES, run.counts
    assert run.counts["failed"] == 0
    assert sorted(r["ref"] for r in run.results) == sorted(f"{i}.jpg" for i in range(IMAGES))
    assert len({r["id"] for r in run.results}) == IMAGES
    assert all(r["status"] == "succeeded" and r["result"] for r in run.results)
    assert stored == [True] * IMAGES  # the bytes went to the blob store...
    assert run.peak < run.maxmemory  # ...not into Redis:
    assert run.peak - run.used_before < run.image_bytes / 10  # its records only
