"""Fault injection with real processes: a worker SIGKILLed mid-batch, Redis restarted mid-batch,
and an image that keeps killing workers. Every image ends with exactly one result."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import requests
from flask.testing import FlaskClient

from shared.settings import Settings
from skuai.redis_server import RedisServer
from skuai.stack import free_port
from tests.receiver import receiver
from tests.support.images import distinct_images
from tests.support.isolation import Isolated, OwnWorkers, isolated_app
from tests.support.processes import start_api, start_webhook_worker, start_worker

VISIBILITY_TIMEOUT = 5
# What the workers of these tests get on top of the test's settings.
SHORT_VISIBILITY = {"SKUAI_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}


def _isolated(settings: Settings) -> Isolated:
    """The app on `settings`' Redis, with a short visibility timeout and chunks of 4."""
    return isolated_app(replace(settings, visibility_timeout=VISIBILITY_TIMEOUT, chunk_size=4))


def _submit(client: FlaskClient, images: list[tuple[str, bytes]]) -> str:
    data = {"images": [(io.BytesIO(b), name) for name, b in images]}
    response = client.post("/v1/batches", data=data, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def _batch(client: FlaskClient, batch_id: str) -> dict:
    return dict(client.get(f"/v1/batches/{batch_id}").json)


def _wait(client: FlaskClient, batch_id: str, predicate: object, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            batch = _batch(client, batch_id)
            if predicate(batch):  # type: ignore[operator]
                return batch
        except (KeyError, TypeError):
            pass  # a 503 while Redis is away
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} not as expected after {timeout} s")


def _all_results(client: FlaskClient, batch_id: str) -> list[dict]:
    items, cursor = [], "0"
    while cursor is not None:
        page = client.get(f"/v1/batches/{batch_id}/results?limit=1000&cursor={cursor}").json
        items += page["items"]
        cursor = page["next_cursor"]
    return items


def _done(batch: dict) -> int:
    return int(batch["counts"]["succeeded"] + batch["counts"]["failed"])


def test_worker_sigkilled_mid_batch(
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path
) -> None:
    iso = _isolated(own_db)
    victim = own_workers.start(iso, "victim", trained, **SHORT_VISIBILITY)
    batch_id = _submit(iso.client, distinct_images(tiny_catalog, 800))
    _wait(iso.client, batch_id, lambda b: _done(b) >= 20, 60)
    os.killpg(victim.process.pid, signal.SIGKILL)  # the parent and its pool process, at once
    victim.process.wait()
    assert _done(_batch(iso.client, batch_id)) < 800, "killed too late to test anything"
    own_workers.start(iso, "rescuer", trained, **SHORT_VISIBILITY)
    batch = _wait(iso.client, batch_id, lambda b: b["status"] == "completed", 120)
    assert batch["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 800,
        "failed": 0,
        "canceled": 0,
    }
    items = _all_results(iso.client, batch_id)
    assert len(items) == 800 and len({i["id"] for i in items}) == 800
    assert all(i["status"] == "succeeded" and i["result"] for i in items)


def test_redis_restarted_mid_batch(
    settings: Settings,
    service_env: dict[str, str],
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    port, data_dir = free_port(0), tmp_path / "redis"
    server = RedisServer.start(port=port, data_dir=data_dir)
    iso = _isolated(replace(settings, redis_url=server.url))
    env = iso.worker_env(service_env, **SHORT_VISIBILITY)
    # Not one of `own_workers`: it must stop before its Redis does.
    worker = start_worker("survivor", env, iso.settings, tmp_path / "worker.log", trained)
    try:
        batch_id = _submit(iso.client, distinct_images(tiny_catalog, 300))
        _wait(iso.client, batch_id, lambda b: _done(b) >= 20, 60)
        server.stop()  # SIGTERM: Redis writes its AOF and exits
        down = iso.client.get(f"/v1/batches/{batch_id}")
        assert down.status_code == 503 and down.json["error"]["code"] == "service_unavailable"
        assert down.headers["Retry-After"]
        time.sleep(2)
        server = RedisServer.start(port=port, data_dir=data_dir)
        batch = _wait(iso.client, batch_id, lambda b: b["status"] == "completed", 120)
        items = _all_results(iso.client, batch_id)
    finally:
        worker.stop()
        server.stop()
    assert batch["counts"]["succeeded"] == 300 and batch["total"] == 300
    assert len({i["id"] for i in items}) == 300 and all(i["status"] == "succeeded" for i in items)


def test_poison_image_fails_alone_without_looping(
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path
) -> None:
    """poison.png kills every worker that reaches it; healthy.png sits behind it in the same
    chunk and is interrupted once more when it runs alone (as a deploy or an OOM kill would):
    only the first fails, as poison_message, and nothing loops."""
    iso = _isolated(own_db)
    crash = {"SKUAI_FAILPOINT_CRASH_ON_REF": "poison.png,healthy.png:1"}
    worker = own_workers.start(iso, "crashy", trained, **SHORT_VISIBILITY, **crash)
    images = distinct_images(tiny_catalog, 6)
    images[2] = ("poison.png", images[2][1])
    images[3] = ("healthy.png", images[3][1])
    batch_id = _submit(iso.client, images)
    batch = _wait(iso.client, batch_id, lambda b: b["status"] == "completed", 180)
    worker.stop()
    items = {i["ref"]: i for i in _all_results(iso.client, batch_id)}
    assert items["poison.png"]["status"] == "failed"
    assert items["poison.png"]["error"]["code"] == "poison_message"
    assert all(i["status"] == "succeeded" for ref, i in items.items() if ref != "poison.png")
    assert batch["counts"]["succeeded"] == 5 and batch["counts"]["failed"] == 1
    # The chunk crashed once; then poison.png alone twice (the next claim gives up instead of
    # crashing again) and healthy.png alone once.
    assert worker.log.read_text().count("exited with 'exitcode 70'") == 4


def test_frozen_redis_answers_503_within_about_a_second(
    settings: Settings, service_env: dict[str, str], tiny_catalog: Path, tmp_path: Path
) -> None:
    """Redis stops answering but keeps its connections open (SIGSTOP, as a stalled disk or a
    paused VM would): the API process answers 503 within about SKUAI_REDIS_TIMEOUT (1 s), long
    polls included, and recovers by itself once Redis answers again."""
    server = RedisServer.start(port=free_port(0), data_dir=tmp_path / "redis")
    iso = isolated_app(replace(settings, redis_url=server.url))  # for its API key
    api = start_api({**service_env, **iso.settings.env()}, tmp_path / "api.log")
    auth = iso.auth
    image = {"image": ("a.png", distinct_images(tiny_catalog, 1)[0][1])}
    job = requests.post(f"{api.url}/v1/jobs", files=image, headers=auth, timeout=10).json()
    poll: dict = {}

    def timed_get(path: str) -> tuple[requests.Response, float]:
        began = time.monotonic()
        return requests.get(f"{api.url}{path}", headers=auth, timeout=30), time.monotonic() - began

    def long_poll() -> None:
        poll["answer"] = timed_get(f"/v1/jobs/{job['id']}?wait=20")

    waiter = threading.Thread(target=long_poll)
    waiter.start()
    time.sleep(0.5)  # the long poll is waiting on pub/sub
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        answers = {p: timed_get(p) for p in ("/readyz", f"/v1/jobs/{job['id']}", "/v1/batches/b")}
        waiter.join(10)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    try:
        for path, (response, seconds) in answers.items():
            assert response.status_code == 503 and seconds < 2.0, (path, seconds)
        assert answers["/readyz"][0].json()["checks"]["redis"] == "no answer within 1 s"
        response, seconds = poll["answer"]
        assert response.status_code == 503 and seconds < 5.0, seconds
        assert timed_get(f"/v1/jobs/{job['id']}")[0].status_code == 200  # no restart needed
    finally:
        api.stop()
        server.stop()


def test_lost_messages_are_sent_again(
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path
) -> None:
    """The queue loses every message of a batch (as Kombu can when Redis dies between taking a
    message and recording it): the sweeper notices the stalled batch and sends its jobs again."""
    iso = _isolated(own_db)
    batch_id = _submit(iso.client, distinct_images(tiny_catalog, 10))
    assert iso.conn.llen("inference") == 3
    iso.conn.delete("inference")  # every message of the batch is gone
    # stale after twice that
    worker = own_workers.start(iso, "sweeper", trained, SKUAI_VISIBILITY_TIMEOUT="2")
    batch = _wait(iso.client, batch_id, lambda b: b["status"] == "completed", 60)
    assert batch["counts"]["succeeded"] == 10
    assert "batch stalled: sent 10 unfinished jobs again" in worker.log.read_text()


def test_a_redis_error_between_finishing_and_sending_events_loses_none(
    own_db: Settings,
    own_workers: OwnWorkers,
    service_env: dict[str, str],
    trained: str,
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    """The chunk's task meets a Redis error right after its jobs became final (the task retries
    and its rerun claims none of them): every job.succeeded and the batch.completed still go
    out, once each."""
    iso = _isolated(own_db)
    own_workers.start(iso, "blip", trained, SKUAI_FAILPOINT_BLIP_AFTER_FINISH="1")
    env = iso.worker_env(service_env, SKUAI_WEBHOOK_RETRY_SCHEDULE="0.5,0.5")
    hooks = start_webhook_worker("hooks", env, tmp_path / "hooks.log")
    try:
        with receiver() as rx:
            events = {"url": rx.url, "events": ["job.succeeded", "batch.completed"]}
            assert iso.client.post("/v1/webhooks", json=events).status_code == 201
            _submit(iso.client, distinct_images(tiny_catalog, 3))
            got = rx.wait_for(4, timeout=30)
            time.sleep(1)  # room for a duplicate to arrive
            types = sorted(r.event["type"] for r in rx.received)
    finally:
        hooks.stop()
    assert iso.conn.get("skuai:failpoint:blip_after_finish") is not None, "the failpoint fired"
    assert types == ["batch.completed", *["job.succeeded"] * 3]
    assert len({r.headers["webhook-id"] for r in got}) == 4


def test_redis_refusing_writes_answers_503(
    settings: Settings, tiny_catalog: Path, tmp_path: Path
) -> None:
    """Redis full (noeviction), a replica after a failover, or unable to save: each write
    answers 503 with Retry-After and says why, instead of a 500."""
    server = RedisServer.start(port=free_port(0), data_dir=tmp_path / "redis")
    try:
        iso = isolated_app(replace(settings, redis_url=server.url))
        image = distinct_images(tiny_catalog, 1)[0][1]

        def submit() -> tuple[int, str, str | None]:
            data = {"image": (io.BytesIO(image), "a.png")}
            response = iso.client.post("/v1/jobs", data=data, content_type="multipart/form-data")
            message = response.json["error"]["message"] if response.status_code >= 400 else ""
            return response.status_code, message, response.headers.get("Retry-After")

        iso.conn.config_set("maxmemory", 1)  # anything in use is over it
        assert submit() == (503, "the job store is out of memory; retry shortly", "5")
        iso.conn.config_set("maxmemory", 0)
        iso.conn.execute_command("REPLICAOF", "127.0.0.1", free_port(0))  # a master never seen
        assert submit() == (503, "the job store is read-only (failing over); retry shortly", "5")
        iso.conn.execute_command("REPLICAOF", "NO", "ONE")
        iso.conn.config_set("save", "3600 1")  # a save that fails stops writes (MISCONF)
        iso.conn.config_set("dir", "/proc")
        iso.conn.bgsave()
        time.sleep(0.5)
        assert iso.conn.info("persistence")["rdb_last_bgsave_status"] == "err"
        assert submit() == (503, "the job store cannot save to disk; retry shortly", "5")
        iso.conn.config_set("save", "")  # or the shutdown's save fails and Redis stays up
        iso.conn.config_set("dir", str(tmp_path / "redis"))
    finally:
        server.stop()
