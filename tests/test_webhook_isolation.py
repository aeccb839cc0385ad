"""Webhooks under load and failure: accepting a batch creates none of its deliveries (a webhook
worker fans its one event out, even when the message for it was lost), one tenant's hanging
receiver does not delay another tenant's events, and a disabled subscription can be enabled again
and the events it missed replayed. Images that fail at upload make the events: no model needed."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from shared import keys
from shared.api_keys import KeyStore
from tests.receiver import receiver
from tests.support.http import bearer, deliveries_of, http
from tests.support.polling import wait_until
from tests.support.processes import WorkerProcess

NOT_AN_IMAGE = b"not an image"


def _failed_batch(api_url: str, images: int, api_key: str | None = None) -> dict:
    """A batch whose images all fail at upload: `images` job.failed events, at once."""
    files = [("images", (f"bad{i}.png", NOT_AN_IMAGE)) for i in range(images)]
    response = http.post(f"{api_url}/v1/batches", files=files, headers=bearer(api_key), timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_batch_is_accepted_without_its_deliveries_and_none_is_lost(
    api_url: str, conn: redis.Redis, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    rx, subscribe = hook
    # A tenant of its own: the test tenant's events that earlier tests left unsent (no webhook
    # worker ran then, their lease has lapsed) are fanned out by these workers too, to the
    # subscriptions that exist then — this one among them, were it the test tenant's.
    key = KeyStore(conn).create("isolation-batch")
    sub = subscribe(["job.failed", "batch.completed"], api_key=key)
    before = set(conn.zrange(keys.EVENTS_DUE, 0, -1))
    batch = _failed_batch(api_url, 30, api_key=key)
    assert deliveries_of(api_url, sub["id"], key) == []  # nothing fanned out inside the request
    recorded = set(conn.zrange(keys.EVENTS_DUE, 0, -1)) - before
    assert len(recorded) == 2  # one event for the 30 failed jobs, one for the batch
    with receiver() as late:
        # Subscribed after the events happened: their late fan-out must not reach it.
        subscribe(["job.failed", "batch.completed"], api_key=key, url=late.url)
        # The process sending the fan-out died (its message is gone) and the events' lease lapsed.
        for queue in conn.scan_iter("webhooks*"):
            conn.delete(queue)
        conn.zadd(keys.EVENTS_DUE, dict.fromkeys(recorded, 0))
        webhook_workers()
        rx.wait_for(31)
        time.sleep(0.5)  # anything extra would show up now
    assert len({r.headers["webhook-id"] for r in rx.received}) == len(rx.received) == 31
    [completed] = rx.of_type("batch.completed")
    assert completed.verify(sub["secret"])["data"]["id"] == batch["id"]
    assert len(rx.of_type("job.failed")) == 30
    assert late.received == []


def test_a_hanging_receiver_does_not_delay_another_tenants_events(
    api_url: str, conn: redis.Redis, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers(timeout=2)  # four processes: the hanging endpoint may hold two of them
    hanging, subscribe = hook
    hanging.plan = [(200, {}, 30.0)] * 100  # every request hangs far past the timeout
    subscribe(["job.failed"])
    other_key = KeyStore(conn).create("isolation-other")
    with receiver() as healthy:
        sub = subscribe(["job.failed"], api_key=other_key, url=healthy.url)
        _failed_batch(api_url, 20)  # 20 events for the hanging receiver, queued first
        hanging.wait_for(1)
        sent = time.monotonic()
        _failed_batch(api_url, 1, api_key=other_key)
        [got] = healthy.wait_for(1, timeout=30)
        assert got.at - sent < 4, f"the healthy receiver waited {got.at - sent:.1f} s"
        assert got.verify(sub["secret"])["type"] == "job.failed"
        assert len(hanging.received) < 20  # its own events wait their turn in its lane


def test_a_disabled_webhook_is_enabled_again_and_its_missed_events_replayed(
    api_url: str, hook: tuple, webhook_workers: Callable[..., WorkerProcess]
) -> None:
    webhook_workers()
    rx, subscribe = hook
    rx.plan = [(410, {}, 0.0)]
    sub = subscribe(["job.failed"])
    url = f"{api_url}/v1/webhooks/{sub['id']}"
    _failed_batch(api_url, 1)
    wait_until(
        lambda: http.get(url, timeout=5).json()["status"] == "disabled", 15, "disabled by 410"
    )
    _failed_batch(api_url, 2)  # missed while disabled: logged, not sent
    wait_until(lambda: len(deliveries_of(api_url, sub["id"])) == 3, 15, "missed events logged")
    log = deliveries_of(api_url, sub["id"])
    missed = [d for d in log if d["status"] == "skipped"]
    assert len(missed) == 2 and all("disabled" in d["last_error"] for d in missed)
    refused = http.post(f"{url}/deliveries/{missed[0]['id']}/retry", timeout=10)
    assert refused.status_code == 409 and "enable" in refused.json()["error"]["message"]
    assert http.post(f"{api_url}/v1/webhooks/wh_missing/enable", timeout=10).status_code == 404

    enabled = http.post(f"{url}/enable", timeout=10)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["status"] == "active" and enabled.json()["disabled_reason"] is None
    for delivery in log:
        assert http.post(f"{url}/deliveries/{delivery['id']}/retry", timeout=10).status_code == 202
    replayed = rx.wait_for(4)[1:]
    assert {r.headers["webhook-id"] for r in replayed} == {d["id"] for d in log}
    assert all(r.verify(sub["secret"])["type"] == "job.failed" for r in replayed)
    wait_until(
        lambda: all(d["status"] == "delivered" for d in deliveries_of(api_url, sub["id"])),
        10,
        "the log showing every replay delivered",
    )
