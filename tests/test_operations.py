"""Operations: readiness before and after a worker comes up, hot model reload between batches
without mixing versions, worker recycling, and Flower listing workers and tasks."""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient

from shared.settings import Settings
from shared.workers import WorkerRegistry
from skuai.stack import free_port
from tests.support.http import http
from tests.support.images import distinct_images, sample_image
from tests.support.isolation import OwnWorkers, isolated_app
from tests.support.polling import answers, wait_until
from tests.support.processes import start_skuai, stop_process
from training.registry import Registry


def _batch(client: FlaskClient, catalog: Path, count: int, salt: int) -> str:
    images = [(io.BytesIO(data), name) for name, data in distinct_images(catalog, count, salt)]
    response = client.post(
        "/v1/batches", data={"images": images}, content_type="multipart/form-data"
    )
    assert response.status_code == 202
    return str(response.json["id"])


def _completed(client: FlaskClient, batch_id: str) -> bool:
    return client.get(f"/v1/batches/{batch_id}").json["status"] == "completed"


def test_readyz_before_and_after_a_worker(
    own_db: Settings, own_workers: OwnWorkers, trained: str
) -> None:
    iso = isolated_app(own_db)
    client = iso.client
    before = client.get("/readyz")
    assert before.status_code == 503 and before.json["checks"]["inference_workers"] == 0
    worker = own_workers.start(iso, "ready", trained)
    after = client.get("/readyz")
    assert after.status_code == 200 and after.json["checks"]["model_versions"] == [trained]
    worker.stop()
    wait_until(lambda: client.get("/readyz").status_code == 503, 30, "readiness to drop")


def test_hot_reload_between_batches_never_mixes(
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path, tmp_path: Path
) -> None:
    registry_dir = tmp_path / "registry"
    shutil.copytree(own_db.registry_dir / trained, registry_dir / "v1")
    shutil.copytree(own_db.registry_dir / trained, registry_dir / "v2")
    registry = Registry(registry_dir)
    registry.activate("v1")
    iso = isolated_app(replace(own_db, registry=registry_dir))
    client = iso.client
    own_workers.start(iso, "reload", "v1")
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
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path
) -> None:
    # A memory limit below TensorFlow's own recycles the pool process after each task. Loading
    # TensorFlow and the model can take longer than Celery's default 4 s for the replacement to
    # report up (a busy CPU, a GPU initialising): it must not be killed for it.
    iso = isolated_app(own_db)
    recycled = {"SKUAI_WORKER_MAX_MEMORY_MB": "64", "SKUAI_FAILPOINT_SLOW_START": "6"}
    worker = own_workers.start(iso, "slow", trained, **recycled)
    pids = _serve_jobs_one_by_one(iso.client, iso.conn, tiny_catalog, 2, timeout=90, log=worker.log)

    def replaced() -> bool:
        # The replacement announces its model on its next heartbeat, which may come after the
        # last job was checked; the retired process's heartbeat lapses meanwhile.
        online = WorkerRegistry(iso.conn).online()
        pids.update(w["pid"] for w in online if w.get("model_version"))
        return len(pids) >= 2

    wait_until(replaced, 60, "the pool process being replaced", worker.log)
    worker.stop()  # its log complete
    text = worker.log.read_text(errors="replace")
    assert "Timed out waiting for UP message" not in text, text[-2000:]


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
    flower = start_skuai(["flower", "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/healthcheck"), 60, "Flower", log)
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
        stop_process(flower)
    assert any(name.startswith("test@") for name in workers)


def test_worker_logs_are_json_lines_with_ids(
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path
) -> None:
    iso = isolated_app(own_db)
    client = iso.client
    log = own_workers.start(iso, "jsonlog", trained, SKUAI_LOG_FORMAT="json").log
    batch_id = _batch(client, tiny_catalog, 3, salt=3)
    wait_until(lambda: _completed(client, batch_id), 60, "the batch")
    wait_until(lambda: batch_id in log.read_text(), 10, "the chunk log line")
    records = []
    for line in log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # Celery's start-up banner is not a log record
    chunk = [r for r in records if r.get("batch_id") == batch_id]
    assert chunk and chunk[0]["level"] == "INFO" and len(chunk[0]["job_ids"]) == 3
    assert chunk[0]["model_version"] == trained and "chunk of 3" in chunk[0]["message"]


pytestmark = pytest.mark.timeout(300)
