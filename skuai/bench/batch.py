"""The batch scenario: upload N images through the API, wait for the batch, and measure upload
and end-to-end throughput, status/results latency under load, and API/worker memory."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from skuai.bench.procs import MemorySampler
from skuai.client import SkuaiClient
from skuai.console import make_progress

PART_SIZE = 1000
POLL_SECONDS = 0.5  # polls are cheap but share the cores with the service being measured


def run_batch(client: SkuaiClient, images: list[Path], roots: dict[str, int]) -> dict[str, Any]:
    """Measure one batch of `images` through the API at `client`; sample `roots`' memory."""
    with MemorySampler(roots) as memory:
        started = time.time()  # wall clock: compared with the batches' finished_at
        batch_ids = _upload(client, images)
        uploaded = time.time()
        probe = _LatencyProbe(client, batch_ids[0])
        with probe:
            finished = _wait(client, batch_ids, len(images))
    upload_s, total_s = uploaded - started, finished - started
    return {
        "images": len(images),
        "upload_seconds": round(upload_s, 2),
        "upload_images_per_second": round(len(images) / upload_s, 1),
        "end_to_end_seconds": round(total_s, 2),
        "end_to_end_images_per_second": round(len(images) / total_s, 1),
        "status_latency_ms": probe.summary("status"),
        "results_latency_ms": probe.summary("results"),
        "memory_mib": memory.summary(),
    }


def _upload(client: SkuaiClient, images: list[Path]) -> list[str]:
    ids = []
    with make_progress() as progress:
        task = progress.add_task("uploading", total=len(images))
        for i in range(0, len(images), PART_SIZE):
            part = images[i : i + PART_SIZE]
            batch = client.create_batch([(f"{i + j}-{p.name}", p) for j, p in enumerate(part)])
            ids.append(batch["id"])
            progress.advance(task, len(part))
    return ids


def _wait(client: SkuaiClient, batch_ids: list[str], total: int) -> float:
    """When the last batch finished (epoch seconds, as the service recorded it): polling
    every POLL_SECONDS would add up to that much to a run of a few seconds."""
    with make_progress() as progress:
        task = progress.add_task("classifying", total=total)
        while True:
            batches = [client.batch(b) for b in batch_ids]
            done = sum(b["counts"]["succeeded"] + b["counts"]["failed"] for b in batches)
            progress.update(task, completed=done)
            if all(b["status"] == "completed" for b in batches):
                return max(_epoch(str(b["finished_at"])) for b in batches)
            time.sleep(POLL_SECONDS)


def _epoch(stamp: str) -> float:
    """Epoch seconds of the API's UTC timestamps ('...T12:00:00.123Z')."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class _LatencyProbe:
    """Times status and results requests while the workers are busy."""

    def __init__(self, client: SkuaiClient, batch_id: str) -> None:
        self.client = client
        self.batch_id = batch_id
        self.times: dict[str, list[float]] = {"status": [], "results": []}
        self._stop = threading.Event()

    def __enter__(self) -> _LatencyProbe:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, call in (
                ("status", lambda: self.client.batch(self.batch_id)),
                (
                    "results",
                    lambda: self.client._call(
                        "GET", f"/v1/batches/{self.batch_id}/results", params={"limit": 100}
                    ),
                ),
            ):
                began = time.perf_counter()
                call()
                self.times[name].append((time.perf_counter() - began) * 1000)

    def summary(self, name: str) -> dict[str, float]:
        values = sorted(self.times[name])
        if not values:
            return {}
        return {
            "p50": round(statistics.median(values), 1),
            "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 1),
            "samples": len(values),
        }
