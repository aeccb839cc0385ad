"""A whole skuai stack on a Redis capped by `maxmemory` (its own server, API process and worker
process) or the test session's own stack on its Redis capped for a while, distinct noise JPEGs
of a given size, and one batch of them through the HTTP API with Redis' memory read before,
during and after. Used by tests/test_capped_redis.py and, at full size, by
docs/experiments/capped_redis.py."""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import redis
import requests
from PIL import Image

from shared.api_keys import KeyStore
from shared.settings import Settings
from shared.workers import WorkerRegistry
from skuai.redis_server import RedisServer
from skuai.stack import free_port
from tests.support.polling import wait_until
from tests.support.processes import (
    START_TIMEOUT,
    ApiServer,
    WorkerProcess,
    launch_api,
    start_skuai,
    wait_healthy,
)

MB = 1024 * 1024
QUALITY = 92
FINAL = ("completed", "canceled")


def noise_jpegs(count: int, size: int = 150_000, seed: int = 0) -> list[bytes]:
    """`count` different JPEGs of about `size` bytes each: one square of colour noise (it barely
    compresses, so the side sets the size), rolled by a different offset for each image."""
    rng = np.random.default_rng(seed)
    side = 64
    # One calibration: JPEG bytes grow with pixels, so scale the side by the square root.
    for _ in range(2):
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        side = max(16, round(side * (size / len(_jpeg(noise))) ** 0.5))
    base = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    cells = side * side
    # Image i is the square moved by (i // side, i % side) pixels (and xor'ed past side² images),
    # so no two share their bytes.
    return [
        _jpeg(np.roll(base, (i // side % side, i % side), axis=(0, 1)) ^ np.uint8(i // cells))
        for i in range(count)
    ]


def _jpeg(pixels: np.ndarray) -> bytes:
    """`pixels` as a JPEG."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=QUALITY)
    return out.getvalue()


@dataclass
class CappedStack:
    """A running stack: its Redis (capped), API URL and the API key of its tenant. `shared`: a
    Redis that served others before (its lifetime `used_memory_peak` says nothing of this run)."""

    redis_url: str
    api_url: str
    headers: dict[str, str]
    shared: bool = False

    def memory(self) -> dict[str, int]:
        """Redis' `used_memory`, `used_memory_peak` and `maxmemory`, in bytes."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            info = client.info("memory")
        finally:
            client.close()
        return {name: int(info[name]) for name in ("used_memory", "used_memory_peak", "maxmemory")}


@dataclass(frozen=True)
class Backend:
    """Where one stack keeps its files, and its blob store: a folder of its own (no
    `blob_url`) or `blob_url` with the S3 variables in `env`."""

    folder: Path
    env: dict[str, str]
    blob_url: str | None = None


@contextmanager
def capped_stacks(
    settings: Settings, version: str, backends: dict[str, Backend], *, maxmemory: int
) -> Iterator[dict[str, CappedStack]]:
    """For each backend: its own Redis with `maxmemory` (noeviction), an API and an inference
    worker serving `version` from `settings`' registry. All processes start at once (the APIs
    boot while the workers load the model) and are told to stop at once on exit."""
    with ExitStack() as stack:
        launched = {
            name: _launch(stack, name, backend, maxmemory) for name, backend in backends.items()
        }
        stack.callback(
            _terminate,
            [p for _, api, worker in launched.values() for p in (api.process, worker.process)],
        )
        for name, (capped, api, worker) in launched.items():
            _wait_loaded(replace(settings, redis_url=capped.redis_url), name, version, worker)
            wait_healthy(api, backends[name].folder / "api.log")
        yield {name: capped for name, (capped, _, _) in launched.items()}


@contextmanager
def capped_for_now(redis_url: str, headroom: int) -> Iterator[int]:
    """Cap a running Redis at its `used_memory` plus `headroom` (noeviction) until the block
    ends, then give it back its own limit and policy; the cap."""
    client = redis.Redis.from_url(redis_url)
    saved: dict[str, str] = client.config_get("maxmemory*")  # type: ignore[assignment]
    try:
        cap = int(client.info("memory")["used_memory"]) + headroom
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", cap)
        yield cap
    finally:
        for name in ("maxmemory", "maxmemory-policy"):
            client.config_set(name, saved[name])
        client.close()


def _launch(
    stack: ExitStack, name: str, backend: Backend, maxmemory: int
) -> tuple[CappedStack, ApiServer, WorkerProcess]:
    """Start one backend's Redis (and wait for it), API and worker (without waiting)."""
    folder = backend.folder
    server = RedisServer.start(port=free_port(0), data_dir=folder / "redis")
    stack.callback(server.stop)
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory", maxmemory)
    key = KeyStore(client).create("capped")
    client.close()
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **backend.env,
        "SKUAI_REDIS_URL": server.url,
        "SKUAI_HOME": str(home),
        "SKUAI_BLOB_URL": backend.blob_url or (home / "blobs").as_uri(),
        "SKUAI_CHUNK_SIZE": "64",  # the default: the test session's 4 is for small batches
        "SKUAI_API_KEY": key,
    }
    api = launch_api(env, folder / "api.log")
    stack.callback(api.stop)
    args = ["worker", "--queues", "interactive,inference", "--name", name]
    worker = WorkerProcess(
        name, start_skuai(args, env, folder / "worker.log"), folder / "worker.log"
    )
    stack.callback(worker.stop)
    capped = CappedStack(server.url, api.url, {"Authorization": f"Bearer {key}"})
    return capped, api, worker


def _wait_loaded(settings: Settings, name: str, version: str, worker: WorkerProcess) -> None:
    """Wait until worker `name` on `settings`' Redis has loaded `version`."""
    workers = WorkerRegistry(redis.Redis.from_url(settings.redis_url))

    def loaded() -> bool:
        return any(
            w.get("model_version") == version and w["name"].startswith(f"{name}@")
            for w in workers.online()
        )

    wait_until(loaded, START_TIMEOUT, f"worker {name} loading its model", worker.log)


def _terminate(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process still running, so that they stop together."""
    for process in processes:
        if process.poll() is None:
            process.terminate()


@dataclass
class BatchRun:
    """What one batch through a capped stack did."""

    images: int
    image_bytes: int
    upload_status: int
    upload_seconds: float
    total_seconds: float
    counts: dict[str, int]
    results: list[dict]
    used_before: int
    peak: int  # the highest `used_memory` seen during the run (and Redis' own peak, if not shared)
    maxmemory: int


def run_batch(stack: CappedStack, images: list[bytes], timeout: float = 600) -> BatchRun:
    """Upload `images` (named `i.jpg`) as one batch, wait for it, and read every result."""
    before = stack.memory()
    watch = _MemoryWatch(stack)
    files = [("images", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    session = requests.Session()
    session.headers.update(stack.headers)
    started = time.monotonic()
    response = session.post(f"{stack.api_url}/v1/batches", files=files, timeout=timeout)
    uploaded = time.monotonic()
    counts: dict[str, int] = {}
    results: list[dict] = []
    if response.status_code == 202:
        url = f"{stack.api_url}/v1/batches/{response.json()['id']}"
        counts = _wait_final(session, url, started + timeout)["counts"]
        results = _all_results(session, url)
    after = stack.memory()
    peak = watch.stop()
    if not stack.shared:
        peak = max(peak, after["used_memory_peak"])
    return BatchRun(
        images=len(images),
        image_bytes=sum(len(data) for data in images),
        upload_status=response.status_code,
        upload_seconds=uploaded - started,
        total_seconds=time.monotonic() - started,
        counts=counts,
        results=results,
        used_before=before["used_memory"],
        peak=peak,
        maxmemory=after["maxmemory"],
    )


class _MemoryWatch:
    """Reads a Redis' `used_memory` every few milliseconds on a thread until stopped."""

    def __init__(self, stack: CappedStack) -> None:
        self.client = redis.Redis.from_url(stack.redis_url)
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, int(self.client.info("memory")["used_memory"]))
            self.done.wait(0.01)

    def stop(self) -> int:
        """Stop watching; the highest `used_memory` seen."""
        self.done.set()
        self.thread.join()
        self.client.close()
        return self.peak


def _wait_final(session: requests.Session, url: str, deadline: float) -> dict:
    """The batch at `url` once completed or canceled (as it is at `deadline` otherwise)."""
    while (batch := session.get(url, timeout=30).json())["status"] not in FINAL:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return batch


def _all_results(session: requests.Session, url: str) -> list[dict]:
    """Every job of the batch at `url`, a thousand a page."""
    items: list[dict] = []
    cursor: str | None = "0"
    while cursor is not None:
        params = {"cursor": cursor, "limit": "1000"}
        page = session.get(f"{url}/results", params=params, timeout=60).json()
        items += page["items"]
        cursor = page["next_cursor"]
    return items


def summary(run: BatchRun) -> dict[str, object]:
    """The numbers worth recording of a run."""
    return {
        "images": run.images,
        "image_mb": round(run.image_bytes / MB, 1),
        "upload_status": run.upload_status,
        "upload_s": round(run.upload_seconds, 1),
        "total_s": round(run.total_seconds, 1),
        "counts": run.counts,
        "results": len(run.results),
        "distinct_refs": len({r["ref"] for r in run.results}),
        "succeeded_with_result": sum(
            r["status"] == "succeeded" and r["result"] is not None for r in run.results
        ),
        "redis_used_before_mb": round(run.used_before / MB, 2),
        "redis_peak_mb": round(run.peak / MB, 2),
        "maxmemory_mb": round(run.maxmemory / MB, 1),
    }
