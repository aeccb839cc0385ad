"""The designs users would otherwise run, measured with the same model and images: a synchronous
predict-per-request endpoint, and one Celery task per image."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from skuai.bench.batch import run_batch
from skuai.client import SkuaiClient
from skuai.stack import Stack, free_port

CLIENTS = 4


def sync_endpoint(
    registry: Path, images: list[Path], log: Path, precision: str = "fp32"
) -> dict[str, Any]:
    """POST every image to the synchronous baseline from CLIENTS clients; images per second."""
    port = free_port(0)
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skuai.bench.sync_server",
                "--registry",
                str(registry),
                "--port",
                str(port),
                "--precision",
                precision,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{url}/healthz", server)

        def one(path: Path) -> None:
            with path.open("rb") as handle:
                requests.post(
                    f"{url}/predict", files={"image": handle}, timeout=120
                ).raise_for_status()

        began = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(one, images))
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(30)
    return {
        "images": len(images),
        "clients": CLIENTS,
        "images_per_second": round(len(images) / elapsed, 2),
    }


def task_per_image(stack: Stack, images: list[Path]) -> dict[str, Any]:
    """The same batch through an API that sends one Celery task per image (chunks of one)."""
    url = stack.spawn_api("api-task-per-image", free_port(0), {"SKUAI_CHUNK_SIZE": "1"})
    _wait_up(f"{url}/healthz", None)
    client = SkuaiClient(url, key=stack.api_key, timeout=300)
    result = run_batch(client, images, {})
    return {"images": len(images), "images_per_second": result["end_to_end_images_per_second"]}


def _wait_up(url: str, process: subprocess.Popen[bytes] | None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the baseline server exited ({process.returncode})")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not come up")
