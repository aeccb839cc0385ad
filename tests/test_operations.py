"""Operations: readiness before and after a worker comes up, hot model reload between batches
without mixing versions, worker recycling, and Flower listing workers and tasks."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient

from shared.settings import Settings
from shared.workers import WorkerRegistry
from skuai.stack import free_port
from tests.conftest import http, isolated_app, redis_db, sample_image, start_worker, wait_until
from training.registry import Registry


def _isolated(
    settings: Settings, db: int, registry: Path | None = None
) -> tuple[Settings, FlaskClient, redis.Redis]:
    changed = Settings(
        redis_url=redis_db(settings, db), home=settings.home, registry=registry or settings.registry
    )
    client, conn = isolated_app(changed)
    return changed, client, conn


def _env(service_env: dict[str, str], settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **service_env,
        "SKUAI_REDIS_URL": settings.redis_url,
        "SKUAI_REGISTRY": str(settings.registry_dir),
        **extra,
    }


def _batch(client: FlaskClient, catalog: Path, count: int, salt: int) -> str:
    sources = sorted(catalog.rglob("*.png"))
    images = [
        (io.BytesIO(sources[i % len(sources)].read_bytes() + bytes([salt]) * (i + 1)), f"{i}.png")
        for i in range(count)
    ]
    response = client.post(
        "/v1/batches", data={"images": images}, content_type="multipart/form-data"
    )
    assert response.status_code == 202
    return str(response.json["id"])


def _completed(client: FlaskClient, batch_id: str) -> bool:
    return client.get(f"/v1/batches/{batch_id}").json["status"] == "completed"


def test_readyz_before_and_after_a_worker(
    settings: Settings, service_env: dict[str, str], trained: str, tmp_path: Path
) -> None:
    isolated, client, _ = _isolated(settings, 10)
    before = client.get("/readyz")
    assert before.status_code == 503 and before.json["checks"]["inference_workers"] == 0
    worker = start_worker(
        "ready", _env(service_env, isolated), isolated, tmp_path / "w.log", trained
    )
    try:
        after = client.get("/readyz")
        assert after.status_code == 200 and after.json["checks"]["model_versions"] == [trained]
    finally:
        worker.stop()
    wait_until(lambda: client.get("/readyz").status_code == 503, 30, "readiness to drop")


def test_hot_reload_between_batches_never_mixes(
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    registry_dir = tmp_path / "registry"
    shutil.copytree(settings.registry_dir / trained, registry_dir / "v1")
    shutil.copytree(settings.registry_dir / trained, registry_dir / "v2")
    registry = Registry(registry_dir)
    registry.activate("v1")
    isolated, client, _ = _isolated(settings, 11, registry_dir)
    worker = start_worker("reload", _env(service_env, isolated), isolated, tmp_path / "w.log", "v1")
    try:
        first = _batch(client, tiny_catalog, 800, salt=1)
        wait_until(
            lambda: client.get(f"/v1/batches/{first}").json["counts"]["succeeded"] > 0,
            30,
            "the first batch starting",
        )
        registry.activate("v2")  # what `skuai models activate v2` does, without its start-up
        assert not _completed(client, first), "the first batch ended before the switch"
        second = _batch(client, tiny_catalog, 20, salt=2)
        wait_until(
            lambda: _completed(client, first) and _completed(client, second),
            60,
            "both batches completing",
        )
        # Heartbeats say which versions each process has loaded (every few seconds).
        wait_until(
            lambda: set(client.get("/v1/models").json["live"]) == {"v1", "v2"},
            20,
            "the heartbeat reporting both versions",
        )
        models = client.get("/v1/models").json
    finally:
        worker.stop()
    for batch_id, version in ((first, "v1"), (second, "v2")):
        assert client.get(f"/v1/batches/{batch_id}").json["model_version"] == version
        items = client.get(f"/v1/batches/{batch_id}/results?limit=1000").json["items"]
        assert {i["model_version"] for i in items} == {version}
    assert models["active"] == "v2" and set(models["live"]) == {"v1", "v2"}
    assert [v["version"] for v in models["versions"]] == ["v1", "v2"]
    assert models["versions"][1]["labels"]["models"]


def _serve_jobs_one_by_one(
    client: FlaskClient,
    conn: redis.Redis,
    catalog: Path,
    jobs: int,
    *,
    timeout: float,
    log: Path | None = None,
) -> set[int]:
    """Submit single jobs one at a time; after each, wait for it to succeed and for a pool
    process with a model to be online again. Returns the pids of the pool processes seen."""
    workers = WorkerRegistry(conn)
    pids: set[int] = set()
    for _ in range(jobs):
        data = {"image": (io.BytesIO(sample_image(catalog).read_bytes()), "a.png")}
        job = client.post("/v1/jobs", data=data, content_type="multipart/form-data").json
        wait_until(
            lambda j=job: client.get(f"/v1/jobs/{j['id']}").json["status"] == "succeeded",
            timeout,
            "the job",
            log,
        )
        wait_until(
            lambda: any(w.get("model_version") for w in workers.online()),
            timeout,
            "a pool process with a model",
            log,
        )
        pids |= {w["pid"] for w in workers.online() if w.get("model_version")}
        time.sleep(0.5)
    return pids


def test_worker_recycled_when_memory_grows_and_its_replacement_may_start_slowly(
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    # A memory limit below TensorFlow's own recycles the pool process after each task. Loading
    # TensorFlow and the model can take longer than Celery's default 4 s for the replacement to
    # report up (a busy CPU, a GPU initialising): it must not be killed for it.
    isolated, client, conn = _isolated(settings, 9)
    env = _env(
        service_env, isolated, SKUAI_WORKER_MAX_MEMORY_MB="64", SKUAI_FAILPOINT_SLOW_START="6"
    )
    log = tmp_path / "w.log"
    worker = start_worker("slow", env, isolated, log, trained)
    try:
        pids = _serve_jobs_one_by_one(client, conn, tiny_catalog, 2, timeout=90, log=log)
    finally:
        worker.stop()
    text = log.read_text(errors="replace")
    assert "Timed out waiting for UP message" not in text, text[-2000:]
    assert len(pids) >= 2, "the pool process was never replaced"


def test_flower_lists_workers_and_tasks_behind_basic_auth(
    service_env: dict[str, str],
    api_url: str,
    tiny_catalog: Path,
    tmp_path: Path,
    inference_worker: object,
) -> None:
    port = free_port(0)
    env = {**service_env, "SKUAI_FLOWER_BASIC_AUTH": "ops:s3cret"}
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        flower = subprocess.Popen(
            [sys.executable, "-m", "skuai", "flower", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/healthcheck"), 60, "Flower", log)
        assert requests.get(f"{base}/api/workers", timeout=10).status_code == 401
        time.sleep(2)  # Flower subscribes to task events before the job runs
        job = http.post(
            f"{api_url}/v1/jobs", files={"image": sample_image(tiny_catalog).open("rb")}, timeout=10
        ).json()
        http.get(f"{api_url}/v1/jobs/{job['id']}?wait=20", timeout=30)

        def tasks() -> list[dict]:
            answer = requests.get(f"{base}/api/tasks", auth=("ops", "s3cret"), timeout=10)
            return list(answer.json().values()) if answer.status_code == 200 else []

        wait_until(
            lambda: any(t.get("name") == "skuai.classify_singles" for t in tasks()),
            30,
            "Flower seeing a classify task",
            log,
        )
        workers = requests.get(
            f"{base}/api/workers?refresh=1", auth=("ops", "s3cret"), timeout=30
        ).json()
    finally:
        flower.terminate()
        flower.wait(20)
    assert any(name.startswith("test@") for name in workers)


def test_worker_logs_are_json_lines_with_ids(
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    isolated, client, _ = _isolated(settings, 13)
    log = tmp_path / "w.log"
    worker = start_worker(
        "jsonlog", _env(service_env, isolated, SKUAI_LOG_FORMAT="json"), isolated, log, trained
    )
    try:
        batch_id = _batch(client, tiny_catalog, 3, salt=3)
        wait_until(lambda: _completed(client, batch_id), 60, "the batch")
        wait_until(lambda: batch_id in log.read_text(), 10, "the chunk log line")
    finally:
        worker.stop()
    records = []
    for line in log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # Celery's start-up banner is not a log record
    chunk = [r for r in records if r.get("batch_id") == batch_id]
    assert chunk and chunk[0]["level"] == "INFO" and len(chunk[0]["job_ids"]) == 3
    assert chunk[0]["model_version"] == trained and "chunk of 3" in chunk[0]["message"]


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


pytestmark = pytest.mark.timeout(300)
