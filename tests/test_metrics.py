"""Prometheus metrics after real traffic: API requests summed over gunicorn workers, cluster
metrics written by the workers, and queue depth and age while work waits."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared.settings import Settings
from skuai.stack import free_port
from tests.conftest import http, isolated_app, redis_db, sample_image, wait_until

pytestmark = pytest.mark.usefixtures("inference_worker")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_metrics_after_real_traffic(api_url: str, tiny_catalog: Path, trained: str) -> None:
    before = _samples(requests.get(f"{api_url}/metrics", timeout=10).text)
    image = sample_image(tiny_catalog)
    job = http.post(f"{api_url}/v1/jobs", files={"image": image.open("rb")}, timeout=10).json()
    assert (
        http.get(f"{api_url}/v1/jobs/{job['id']}?wait=20", timeout=30).json()["status"]
        == "succeeded"
    )
    after = _samples(requests.get(f"{api_url}/metrics", timeout=10).text)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("skuai_http_requests_total", method="POST", route="/v1/jobs", status="202") == 1
    assert grew("skuai_http_request_duration_seconds_count", route="/v1/jobs/<job_id>") >= 1
    assert grew("skuai_jobs_finished_total", status="succeeded", kind="single") >= 1
    assert grew("skuai_inference_batch_size_count") >= 1
    for stage in ("decode", "stage1", "stage2"):
        assert _value(after, "skuai_inference_stage_seconds_count", stage=stage) >= 1, stage
    assert _value(after, "skuai_worker_model_info", version=trained) >= 1
    assert ("skuai_queue_depth", (("queue", "inference"),)) in after


def test_queue_depth_and_age_while_work_waits(settings: Settings, tiny_catalog: Path) -> None:
    url = redis_db(settings, 8)  # no worker consumes this database
    client, _ = isolated_app(Settings(redis_url=url, home=settings.home))
    data = sample_image(tiny_catalog).read_bytes()
    for _ in range(3):
        response = client.post(
            "/v1/jobs",
            data={"image": (io.BytesIO(data), "a.png")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 202
    time.sleep(1.2)
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    assert _value(samples, "skuai_queue_depth", queue="interactive") == 3
    assert _value(samples, "skuai_queue_oldest_age_seconds", queue="interactive") >= 1.0
    assert _value(samples, "skuai_pending_images") == 3


def test_request_counts_add_up_over_gunicorn_workers(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port(0)
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "skuai", "api", "--port", str(port), "--workers", "2"],
            env=service_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), 60, "the API", log)
        for _ in range(40):
            assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        samples = _samples(requests.get(f"{url}/metrics", timeout=5).text)
    finally:
        process.terminate()
        process.wait(20)
    # 40 requests plus the one that found the API up, wherever each worker served them.
    assert _value(samples, "skuai_http_requests_total", route="/healthz", status="200") == 41
    pids = {
        line.split("[")[2].split("]")[0]
        for line in log.read_text().splitlines()
        if "Booting worker" in line
    }
    assert len(pids) == 2


def _up(url: str) -> bool:
    # Refused until gunicorn binds; after that a request waits for a worker to boot rather than
    # giving up first and being served (and counted) anyway.
    try:
        return requests.get(f"{url}/healthz", timeout=30).status_code == 200
    except requests.RequestException:
        return False
