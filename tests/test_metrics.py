"""Prometheus metrics after real traffic: API requests summed over gunicorn workers, cluster
metrics written by the workers, and queue depth and age while work waits."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import requests

from shared.settings import Settings
from tests.support import metrics
from tests.support.http import http
from tests.support.images import sample_image
from tests.support.isolation import isolated_app
from tests.support.processes import start_api

pytestmark = pytest.mark.usefixtures("inference_worker")


def test_metrics_after_real_traffic(api_url: str, tiny_catalog: Path, trained: str) -> None:
    before = metrics.samples(requests.get(f"{api_url}/metrics", timeout=10).text)
    image = sample_image(tiny_catalog)
    job = http.post(f"{api_url}/v1/jobs", files={"image": image.open("rb")}, timeout=10).json()
    assert (
        http.get(f"{api_url}/v1/jobs/{job['id']}?wait=20", timeout=30).json()["status"]
        == "succeeded"
    )
    after = metrics.samples(requests.get(f"{api_url}/metrics", timeout=10).text)

    def grew(name: str, **labels: str) -> float:
        return metrics.value(after, name, **labels) - metrics.value(before, name, **labels)

    assert grew("skuai_http_requests_total", method="POST", route="/v1/jobs", status="202") == 1
    assert grew("skuai_http_request_duration_seconds_count", route="/v1/jobs/<job_id>") >= 1
    assert grew("skuai_jobs_finished_total", status="succeeded", kind="single") >= 1
    assert grew("skuai_inference_batch_size_count") >= 1
    for stage in ("decode", "stage1", "stage2"):
        assert metrics.value(after, "skuai_inference_stage_seconds_count", stage=stage) >= 1, stage
    assert metrics.value(after, "skuai_worker_model_info", version=trained) >= 1
    assert ("skuai_queue_depth", (("queue", "inference"),)) in after


def test_queue_depth_and_age_while_work_waits(own_db: Settings, tiny_catalog: Path) -> None:
    client = isolated_app(own_db).client  # no worker consumes this database
    data = sample_image(tiny_catalog).read_bytes()
    for _ in range(3):
        response = client.post(
            "/v1/jobs",
            data={"image": (io.BytesIO(data), "a.png")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 202
    time.sleep(1.2)
    samples = metrics.samples(client.get("/metrics").get_data(as_text=True))
    assert metrics.value(samples, "skuai_queue_depth", queue="interactive") == 3
    assert metrics.value(samples, "skuai_queue_oldest_age_seconds", queue="interactive") >= 1.0
    assert metrics.value(samples, "skuai_pending_images") == 3


def test_request_counts_add_up_over_gunicorn_workers(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "api.log"
    api = start_api(service_env, log, workers=2)
    try:
        for _ in range(40):
            assert requests.get(f"{api.url}/healthz", timeout=5).status_code == 200
        samples = metrics.samples(requests.get(f"{api.url}/metrics", timeout=5).text)
    finally:
        api.stop()
    # 40 requests plus the one that found the API up, wherever each worker served them.
    assert metrics.value(samples, "skuai_http_requests_total", route="/healthz", status="200") == 41
    pids = {
        line.split("[")[2].split("]")[0]
        for line in log.read_text().splitlines()
        if "Booting worker" in line
    }
    assert len(pids) == 2
