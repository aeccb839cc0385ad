"""The review queue through the HTTP API and real workers: nothing kept without the opt-in; an
opted-in tenant's images kept, listed with filters and paging, read back byte for byte and
deleted on request; the size cap evicting the oldest first; the retention removing them; a
corrected job kept; and `skuai feedback export` writing a dataset that `skuai data check`
accepts, deduplicated against another."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import requests
from PIL import Image

from shared import keys
from shared.blobs import open_blob_store
from shared.blobs.store import image_key
from shared.feedback_store import FeedbackStore
from shared.jobs import Job
from shared.review_keeper import expire_review_images
from shared.review_store import ReviewStore
from shared.settings import Settings
from tests.support.http import tenant_session
from tests.support.polling import wait_until
from tests.test_feedback import catalog
from training.feedback_export import export_feedback

pytestmark = pytest.mark.usefixtures("inference_worker")


def noise_images(count: int, seed: int) -> list[tuple[str, bytes]]:
    """`count` small PNGs of random pixels: far apart from each other and from the catalog."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        out = io.BytesIO()
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(out, format="PNG")
        images.append((f"{i}.png", out.getvalue()))
    return images


def _submit(api_url: str, session: requests.Session, images: list[tuple[str, bytes]]) -> dict:
    """Upload a batch, wait for it; its jobs by ref."""
    files = [("images", (name, data, "image/png")) for name, data in images]
    created = session.post(f"{api_url}/v1/batches", files=files, timeout=30)
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while session.get(f"{api_url}/v1/batches/{batch_id}", timeout=10).json()["status"] != (
        "completed"
    ):
        assert time.monotonic() < deadline, "the batch did not complete"
        time.sleep(0.2)
    pages = session.get(f"{api_url}/v1/batches/{batch_id}/results", timeout=10).json()
    return {job["ref"]: job for job in pages["items"]}


def _kept(api_url: str, session: requests.Session, **query: object) -> list[dict]:
    answer = session.get(f"{api_url}/v1/review", params=query, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]  # type: ignore[no-any-return]


def _opt_in(api_url: str, session: requests.Session, **body: object) -> dict:
    answer = session.put(f"{api_url}/v1/review/settings", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_opt_in_listing_filters_and_deletion(
    api_url: str, settings: Settings, tiny_catalog: Path, tmp_path: Path
) -> None:
    off, on = tenant_session(settings, "review-off"), tenant_session(settings, "review-on")
    assert off.get(f"{api_url}/v1/review/settings", timeout=10).json()["keep"] == []
    bad = on.put(f"{api_url}/v1/review/settings", json={"keep": ["everything"]}, timeout=10)
    assert bad.status_code == 400 and "keep" in bad.json()["error"]["message"]
    _opt_in(api_url, on, keep=["uncertain", "sample"], sample=1.0)
    ignored = _submit(api_url, off, noise_images(2, seed=1))
    images = noise_images(4, seed=2)
    jobs = _submit(api_url, on, images)
    wait_until(lambda: len(_kept(api_url, on)) == 4, 30, "four images kept")
    assert _kept(api_url, off) == []  # its chunks ran first: nothing kept without the opt-in
    assert off.get(f"{api_url}/v1/review/{ignored['0.png']['id']}", timeout=10).status_code == 404

    items = _kept(api_url, on)
    assert [i["ref"] for i in items] == ["3.png", "2.png", "1.png", "0.png"]  # newest first
    assert all("sample" in i["reasons"] and i["result"] for i in items)
    uncertain = [i["job_id"] for i in items if "uncertain" in i["reasons"]]
    expected = [
        i["job_id"]
        for i in items
        if i["decision"] != "sku" or i["result"]["sku"]["confidence"] < 0.5
    ]
    assert uncertain == expected
    assert [i["job_id"] for i in _kept(api_url, on, reason="uncertain")] == uncertain
    batch_id = jobs["0.png"]["batch_id"]
    assert len(_kept(api_url, on, batch_id=batch_id)) == 4
    assert _kept(api_url, on, batch_id="batch_other") == []
    assert _kept(api_url, on, since="2999-01-01") == []
    first = on.get(f"{api_url}/v1/review", params={"limit": 3}, timeout=10).json()
    rest = on.get(f"{api_url}/v1/review", params={"cursor": first["next_cursor"]}, timeout=10)
    assert [i["ref"] for i in first["items"] + rest.json()["items"]] == [
        "3.png",
        "2.png",
        "1.png",
        "0.png",
    ]
    assert rest.json()["next_cursor"] is None
    huge = on.get(f"{api_url}/v1/review", params={"cursor": "9" * 20}, timeout=10)
    assert huge.status_code == 400 and "cursor" in huge.json()["error"]["message"], huge.text

    sent = dict(images)
    for item in items:
        image = on.get(f"{api_url}{item['image_url']}", timeout=10)
        assert image.headers["Content-Type"] == "image/png"
        assert image.content == sent[item["ref"]]
    assert off.get(f"{api_url}{items[0]['image_url']}", timeout=10).status_code == 404

    target = jobs["1.png"]["id"]
    assert on.delete(f"{api_url}/v1/review/{target}", timeout=10).status_code == 204
    assert on.get(f"{api_url}/v1/review/{target}/image", timeout=10).status_code == 404
    assert on.delete(f"{api_url}/v1/review/{target}", timeout=10).status_code == 404
    assert on.delete(f"{api_url}/v1/review", timeout=10).json() == {"deleted": 3}
    now = on.get(f"{api_url}/v1/review/settings", timeout=10).json()
    assert (now["kept_count"], now["kept_bytes"]) == (0, 0)

    # A tenant that never opted in: its upload (still there) is never exported.
    (model, skus), *_ = catalog(tiny_catalog).items()
    job_id = ignored["0.png"]["id"]
    url = f"{api_url}/v1/jobs/{job_id}/feedback"
    assert off.post(url, json={"sku": skus[0]}, timeout=10).status_code == 200
    blobs = open_blob_store(settings)
    assert blobs.get(image_key(job_id)) is not None  # the sweeper has not deleted it yet
    conn = redis.Redis.from_url(settings.redis_url)
    report = export_feedback(tmp_path / "data", FeedbackStore(conn), blobs, tenants=["review-off"])
    assert report.counts() == {"image_gone": 1}
    assert not (tmp_path / "data" / model).exists()


def test_the_cap_evicts_the_oldest_and_the_retention_removes(
    api_url: str, settings: Settings
) -> None:
    session = tenant_session(settings, "review-cap")
    images = noise_images(4, seed=3)
    largest = max(len(data) for _, data in images)
    # Room for two images, not three: the first two kept are evicted.
    cap_mb = 2.5 * largest / (1024 * 1024)
    _opt_in(api_url, session, keep=["sample"], sample=1.0, cap_mb=cap_mb)
    jobs = _submit(api_url, session, images)
    last = jobs["3.png"]["id"]
    wait_until(
        lambda: session.get(f"{api_url}/v1/review/{last}", timeout=10).status_code == 200,
        30,
        "the last image kept",
    )
    assert [i["ref"] for i in _kept(api_url, session)] == ["3.png", "2.png"]
    shown = session.get(f"{api_url}/v1/review/settings", timeout=10).json()
    assert shown["kept_count"] == 2 and shown["kept_bytes"] <= cap_mb * 1024 * 1024

    _opt_in(api_url, session, keep=["sample"], sample=1.0, retention_days=1 / 86400)
    time.sleep(1.2)
    # The sweeper's pass (worker/sweeper.py), without waiting for the worker's to come round.
    conn = redis.Redis.from_url(settings.redis_url)
    expire_review_images(conn, open_blob_store(settings))  # (or the worker's pass, just before)
    assert ReviewStore(conn, open_blob_store(settings)).kept_count("review-cap") == 0
    assert _kept(api_url, session) == []
    assert session.get(f"{api_url}/v1/review/{last}/image", timeout=10).status_code == 404


def test_corrected_jobs_kept_and_exported_as_a_dataset(
    api_url: str,
    settings: Settings,
    service_env: dict[str, str],
    tiny_catalog: Path,
    tmp_path: Path,
) -> None:
    session = tenant_session(settings, "review-fix")
    _opt_in(api_url, session, keep=["corrected"])
    jobs = _submit(api_url, session, noise_images(3, seed=4))

    def shown() -> dict:
        return session.get(f"{api_url}/v1/review/settings", timeout=10).json()  # type: ignore[no-any-return]

    wait_until(lambda: shown()["pending_count"] == 3, 30, "three images held pending")
    assert _kept(api_url, session) == []  # held pending a correction: not listed
    assert session.get(f"{api_url}/v1/review/{jobs['0.png']['id']}", timeout=10).status_code == 404
    # The sweeper deletes uploads SKUAI_UPLOAD_TIMEOUT after they finish; corrections coming
    # later still find the images held pending (SKUAI_REVIEW_CORRECTION_WINDOW).
    blobs = open_blob_store(settings)
    blobs.delete_many([image_key(job["id"]) for job in jobs.values()])
    (model, skus), (other_model, _) = list(catalog(tiny_catalog).items())[:2]
    corrections = {
        "0.png": {"sku": skus[0]},
        "1.png": {"not_in_catalog": True, "label": "brand-new", "model": other_model},
        "2.png": {"model": model},  # no SKU: not a training image
    }
    for ref, body in corrections.items():
        url = f"{api_url}/v1/jobs/{jobs[ref]['id']}/feedback"
        assert session.post(url, json=body, timeout=10).status_code == 200
    assert {i["ref"] for i in _kept(api_url, session, reason="corrected")} == set(corrections)
    assert all(i["correction"] for i in _kept(api_url, session))
    assert shown()["pending_count"] == 0 and shown()["kept_count"] == 3

    data = tmp_path / "data"
    shutil.copytree(tiny_catalog, data)
    report = _export(service_env, data, "--tenant", "review-fix")
    assert report["counts"] == {"written": 2, "model_only": 1}, report
    assert (data / model / skus[0] / f"{jobs['0.png']['id']}.png").is_file()
    assert (data / other_model / "brand-new" / f"{jobs['1.png']['id']}.png").is_file()
    manifest = json.loads(Path(report["manifest"]).read_text())
    row = next(r for r in manifest if r["job_id"] == jobs["1.png"]["id"])
    assert row["new_label"] and row["source"] == "review" and row["tenant"] == "review-fix"
    assert row["batch_id"] == jobs["1.png"]["batch_id"] and row["corrected_at"]
    assert Path(report["manifest"]).with_suffix(".csv").is_file()

    checked = _skuai(service_env, "data", "check", str(data), "--min-per-sku", "1", "--json")
    assert checked.returncode == 0, checked.stderr
    counts = json.loads(checked.stdout)
    assert "brand-new" in json.dumps(counts)
    assert _export(service_env, data, "--tenant", "review-fix")["counts"] == {
        "unchanged": 2,
        "model_only": 1,
    }
    fresh = tmp_path / "fresh"
    deduped = _export(service_env, fresh, "--tenant", "review-fix", "--dedup-against", str(data))
    assert deduped["counts"] == {"duplicate": 2, "model_only": 1}


def _export(env: dict[str, str], data: Path, *args: str) -> dict:
    done = _skuai(env, "feedback", "export", str(data), *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _skuai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skuai", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_concurrent_keeps_and_deletes_count_bytes_once(settings: Settings) -> None:
    """Threads keeping and deleting the same items on the real Redis: the byte counter always
    equals the items left, so the cap neither breaks nor evicts everything."""
    conn = redis.Redis.from_url(settings.redis_url)
    store = ReviewStore(conn, open_blob_store(settings))
    tenant, image = "review-race", b"x" * 1000
    jobs = [Job(id=f"job_race{i}", tenant=tenant, result={"decision": "sku"}) for i in range(8)]
    for job in jobs:
        store.keep(job, image, ["sample"])
    assert store.kept_bytes(tenant) == 8000

    def delete_all() -> None:
        for job in jobs:
            store.delete(tenant, [job.id])

    def keep_and_delete(seed: int) -> None:
        for job in jobs[seed::2]:
            store.keep(job, image, ["uncertain"])
            store.delete(tenant, [job.id])
            store.keep(job, image, ["sample"])

    threads = [threading.Thread(target=delete_all) for _ in range(4)]
    threads += [threading.Thread(target=keep_and_delete, args=(i % 2,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    left = conn.hlen(keys.review_items(tenant))
    assert store.kept_bytes(tenant) == 1000 * left
    assert store.kept_count(tenant) == left
    store.delete_all(tenant)
    assert (store.kept_bytes(tenant), store.kept_count(tenant)) == (0, 0)
