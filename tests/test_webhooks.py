"""Webhooks end to end: a real HTTP receiver verifies every delivery with a Standard Webhooks
library; failures, Retry-After, 410, SSRF, slow endpoints, restarts and replay."""

from __future__ import annotations

import io
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from shared.settings import Settings
from shared.webhook_store import WebhookStore
from tests.receiver import receiver
from tests.support.http import TENANT, authorized, deliveries_of, http
from tests.support.images import catalog_images, sample_image
from tests.support.polling import wait_until
from tests.support.processes import WorkerProcess
from web.app import create_app

pytestmark = pytest.mark.usefixtures("inference_worker")


def _submit(api_url: str, catalog: Path, **form: str) -> dict:
    image = sample_image(catalog)
    response = http.post(
        f"{api_url}/v1/jobs", files={"image": image.open("rb")}, data=form, timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_subscriptions_and_the_secret_shown_once(api_url: str) -> None:
    with receiver() as rx:
        created = http.post(
            f"{api_url}/v1/webhooks", json={"url": rx.url, "events": ["job.failed"]}, timeout=10
        )
        assert created.status_code == 201
        sub = created.json()
        assert sub["secret"].startswith("whsec_") and sub["status"] == "active"
        shown = http.get(f"{api_url}/v1/webhooks/{sub['id']}", timeout=10).json()
        assert "secret" not in shown and shown["url"] == rx.url
        listed = http.get(f"{api_url}/v1/webhooks", timeout=10).json()["items"]
        assert sub["id"] in [s["id"] for s in listed] and all("secret" not in s for s in listed)
        assert http.delete(f"{api_url}/v1/webhooks/{sub['id']}", timeout=10).status_code == 204
        assert http.get(f"{api_url}/v1/webhooks/{sub['id']}", timeout=10).status_code == 404


@pytest.fixture()
def strict(settings: Settings, api_key: str) -> FlaskClient:
    """The app refusing private URLs, on the session's Redis, as the test tenant."""
    return authorized(
        create_app(replace(settings, allow_private_urls=False)).test_client(), api_key
    )


def _disabled(api_url: str, webhook_id: str) -> dict:
    """The subscription once it has been disabled (within 10 s)."""
    url = f"{api_url}/v1/webhooks/{webhook_id}"
    wait_until(
        lambda: http.get(url, timeout=5).json()["status"] == "disabled",
        10,
        "the subscription being disabled",
    )
    return http.get(url, timeout=5).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "ftp://example.com/x", "events": ["job.failed"]}, "http"),
        ({"url": "http://127.0.0.1:9/x", "events": ["job.failed"]}, "private"),
        ({"url": "http://[::1]/x", "events": ["job.failed"]}, "private"),
        ({"url": "http://169.254.169.254/latest", "events": ["job.failed"]}, "private"),
        ({"url": "https://example.com/x", "events": ["job.exploded"]}, "unknown event"),
        ({"url": "https://example.com/x", "events": []}, "non-empty"),
    ],
)
def test_refused_subscriptions(strict: FlaskClient, body: dict, fragment: str) -> None:
    response = strict.post("/v1/webhooks", json=body)
    assert response.status_code == 400 and fragment in response.json["error"]["message"]


def test_private_callback_url_refused(strict: FlaskClient, tiny_catalog: Path) -> None:
    data = {
        "image": (io.BytesIO(sample_image(tiny_catalog).read_bytes()), "a.png"),
        "callback_url": "http://10.0.0.8/hook",
    }
    response = strict.post("/v1/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 400 and "private" in response.json["error"]["message"]


def test_job_callback_signed_with_the_tenant_secret(
    api_url: str,
    tiny_catalog: Path,
    conn: redis.Redis,
    webhook_workers: Callable[..., WorkerProcess],
) -> None:
    webhook_workers()
    with receiver() as rx:
        job = _submit(api_url, tiny_catalog, callback_url=rx.url)
        [got] = rx.wait_for(1)
        event = got.verify(WebhookStore(conn).tenant_secret(TENANT))
        assert event["type"] == "job.succeeded" and event["data"]["id"] == job["id"]
        assert event["data"]["result"]["sku"]["label"]
        assert got.headers["webhook-id"].startswith("msg_")


def test_batch_events_exactly_once(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers()
    rx, subscribe = hook
    sub = subscribe(["job.succeeded", "job.failed", "batch.completed"])
    images = catalog_images(tiny_catalog, 5)
    files = [("images", (p.name, p.read_bytes())) for p in images]
    files.append(("images", ("bad.png", b"nope")))
    batch = http.post(f"{api_url}/v1/batches", files=files, timeout=30).json()
    rx.wait_for(7)
    time.sleep(1.0)  # anything extra would show up now
    assert len(rx.of_type("job.succeeded")) == 5 and len(rx.of_type("job.failed")) == 1
    [completed] = rx.of_type("batch.completed")
    data = completed.verify(sub["secret"])["data"]
    assert data["id"] == batch["id"] and data["status"] == "completed"
    assert data["counts"]["succeeded"] == 5 and data["counts"]["failed"] == 1
    assert len({r.headers["webhook-id"] for r in rx.received}) == 7


def test_failing_receiver_gets_the_same_webhook_id_until_it_recovers(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers()
    rx, subscribe = hook
    rx.plan = [(500, {}, 0.0), (502, {}, 0.0), (503, {}, 0.0)]
    sub = subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    got = rx.wait_for(4)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert all(r.verify(sub["secret"])["type"] == "job.succeeded" for r in got)
    wait_until(lambda: deliveries_of(api_url, sub["id"])[0]["status"] == "delivered", 10, "log")
    [delivery] = deliveries_of(api_url, sub["id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 502, 503, 200]
    assert all(a["latency_ms"] >= 0 and a["at"] for a in delivery["attempts"])


def test_retry_after_is_honoured(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers(schedule="0.2,0.2,0.2")
    rx, subscribe = hook
    rx.plan = [(429, {"Retry-After": "3"}, 0.0)]
    subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    first, second = rx.wait_for(2, timeout=30)
    assert second.at - first.at >= 2.9
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_a_retry_after_that_is_not_a_number_is_ignored(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers(schedule="0.2,0.2,0.2")
    rx, subscribe = hook
    rx.plan = [(429, {"Retry-After": "\u00b2"}, 0.0)]  # "²": str.isdigit says yes, float() no
    sub = subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    first, second = rx.wait_for(2, timeout=15)
    assert second.at - first.at < 5  # the schedule's delay, not a lease lapsing
    wait_until(lambda: deliveries_of(api_url, sub["id"])[0]["status"] == "delivered", 10, "log")
    [delivery] = deliveries_of(api_url, sub["id"])
    assert [a["status_code"] for a in delivery["attempts"]] == [429, 200]


def test_410_gone_disables_the_subscription(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers()
    rx, subscribe = hook
    rx.plan = [(410, {}, 0.0)]
    sub = subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    rx.wait_for(1)
    shown = _disabled(api_url, sub["id"])
    assert "410" in shown["disabled_reason"]
    _submit(api_url, tiny_catalog)
    time.sleep(2)
    assert len(rx.received) == 1  # nothing more is sent to a disabled endpoint


def test_an_endpoint_failing_for_the_whole_schedule_is_disabled(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers(schedule="0.2,0.2")
    rx, subscribe = hook
    rx.plan = [(500, {}, 0.0)] * 10
    sub = subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    rx.wait_for(3)
    shown = _disabled(api_url, sub["id"])
    assert "kept failing" in shown["disabled_reason"] and "HTTP 500" in shown["disabled_reason"]
    assert deliveries_of(api_url, sub["id"])[0]["status"] == "failed"


def test_a_hanging_receiver_does_not_slow_inference(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers(timeout=2)
    rx, subscribe = hook
    rx.plan = [(200, {}, 30.0)] * 20  # every request hangs far past the timeout
    subscribe(["job.succeeded"])
    started = time.monotonic()
    jobs = [_submit(api_url, tiny_catalog) for _ in range(5)]
    for job in jobs:
        done = http.get(f"{api_url}/v1/jobs/{job['id']}?wait=20", timeout=30).json()
        assert done["status"] == "succeeded"
    assert time.monotonic() - started < 15


def test_restarted_webhook_worker_still_delivers(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    first = webhook_workers(schedule="4,4")
    rx, subscribe = hook
    rx.plan = [(500, {}, 0.0)]
    sub = subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    rx.wait_for(1)
    # The receiver has answered 500 before the worker records the retry; kill the worker only once
    # the retry is in Redis (killed earlier, the delivery's 120 s lease brings it back instead).
    wait_until(
        lambda: (deliveries_of(api_url, sub["id"]) or [{}])[0].get("next_attempt_at") is not None,
        10,
        "the retry being scheduled",
    )
    first.process.send_signal(signal.SIGKILL)  # dies while the retry waits in Redis
    first.process.wait()
    webhook_workers(schedule="4,4")
    attempts = rx.wait_for(2, timeout=30)
    assert attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"]
    attempts[1].verify(sub["secret"])


def test_replay_sends_the_same_delivery_again(
    api_url: str, tiny_catalog: Path, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers()
    rx, subscribe = hook
    sub = subscribe(["job.succeeded"])
    _submit(api_url, tiny_catalog)
    [original] = rx.wait_for(1)
    wait_until(lambda: deliveries_of(api_url, sub["id"])[0]["status"] == "delivered", 10, "log")
    delivery_id = deliveries_of(api_url, sub["id"])[0]["id"]
    replay = http.post(
        f"{api_url}/v1/webhooks/{sub['id']}/deliveries/{delivery_id}/retry", timeout=10
    )
    assert replay.status_code == 202
    _, again = rx.wait_for(2)
    assert again.headers["webhook-id"] == original.headers["webhook-id"] == delivery_id
    assert again.verify(sub["secret"]) == original.verify(sub["secret"])
    missing = http.post(f"{api_url}/v1/webhooks/{sub['id']}/deliveries/msg_x/retry", timeout=10)
    assert missing.status_code == 404
