"""Single-image jobs through the API: latency (submit to result) under light and heavy load."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from skuai.client import SkuaiClient


def single_jobs(client: SkuaiClient, images: list[Path], *, concurrency: int) -> dict[str, Any]:
    """Send each image as its own job from `concurrency` clients; p50/p99 latency and img/s."""

    def one(path: Path) -> float:
        began = time.perf_counter()
        job = client.submit_image(path)
        while job["status"] in ("queued", "running"):
            job = client.job(job["id"], wait=20)
        return time.perf_counter() - began

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(one, images))
    elapsed = time.perf_counter() - began
    return {
        "requests": len(images),
        "concurrency": concurrency,
        "p50_seconds": round(statistics.median(latencies), 3),
        "p99_seconds": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
        "images_per_second": round(len(images) / elapsed, 2),
    }
