"""Batches over the real API and worker: every upload form, per-image errors, idempotency,
pagination, export, cancel, and two workers sharing one batch."""

from __future__ import annotations

import csv
import functools
import io
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.support.batches import batch_results, wait_for_batch
from tests.support.http import http
from tests.support.images import catalog_images
from tests.support.processes import WorkerProcess, start_worker

pytestmark = pytest.mark.usefixtures("inference_worker")


def test_multipart_images_with_a_bad_one(api_url: str, tiny_catalog: Path, trained: str) -> None:
    images = catalog_images(tiny_catalog, 9)
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images]
    files.append(("images", ("broken.png", b"not an image", "image/png")))
    response = http.post(
        f"{api_url}/v1/batches", files=files, data={"metadata": '{"order": 7}'}, timeout=30
    )
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["total"] == 10 and batch["metadata"] == {"order": 7}
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    done = wait_for_batch(api_url, batch["id"])
    assert done["status"] == "completed" and done["finished_at"]
    assert done["counts"] == {"queued": 0, "running": 0, "succeeded": 9, "failed": 1, "canceled": 0}
    assert done["model_version"] is None or done["model_version"] == trained
    items = batch_results(api_url, batch["id"], limit=3)  # four pages
    assert [i["ref"] for i in items] == [p.name for p in images] + ["broken.png"]
    assert len({i["id"] for i in items}) == 10
    assert all(i["status"] == "succeeded" and i["result"]["sku"]["label"] for i in items[:9])
    assert items[9]["error"]["code"] == "unsupported_media_type"  # no image format at all


def test_archive_with_nested_folders_and_bad_entries(api_url: str, tiny_catalog: Path) -> None:
    good = catalog_images(tiny_catalog, 3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for p in good:
            archive.writestr(f"shoes/{p.parent.name}/{p.name}", p.read_bytes())
        archive.writestr("../../etc/evil.png", good[0].read_bytes())
        archive.writestr("readme.txt", b"hello")
        archive.writestr("more.zip", b"PK\x03\x04")
        archive.writestr("cut.png", good[1].read_bytes()[:60])
    response = http.post(
        f"{api_url}/v1/batches", files={"archive": ("shoes.zip", buffer.getvalue())}, timeout=30
    )
    assert response.status_code == 202, response.text
    done = wait_for_batch(api_url, response.json()["id"])
    items = {i["ref"]: i for i in batch_results(api_url, done["id"])}
    for p in good:
        assert items[f"shoes/{p.parent.name}/{p.name}"]["status"] == "succeeded"
    assert items["../../etc/evil.png"]["error"]["code"] == "unsafe_path"
    assert items["readme.txt"]["error"]["code"] == "unsupported_media_type"
    assert items["more.zip"]["error"]["code"] == "nested_archive"
    assert items["cut.png"]["error"]["code"] == "invalid_image"
    assert done["counts"]["succeeded"] == 3 and done["counts"]["failed"] == 4


@pytest.fixture()
def image_server(tiny_catalog: Path) -> Iterator[str]:
    """A real HTTP server serving the catalog (tests allow private URLs)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tiny_catalog))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_json_urls_fetched_by_the_workers(
    api_url: str, tiny_catalog: Path, image_server: str
) -> None:
    images = catalog_images(tiny_catalog, 2)
    urls = [f"{image_server}/{p.relative_to(tiny_catalog).as_posix()}" for p in images]
    body = {
        "images": [
            {"url": urls[0], "ref": "first"},
            {"url": urls[1]},
            {"url": f"{image_server}/missing.png", "ref": "gone"},
        ]
    }
    response = http.post(f"{api_url}/v1/batches", json=body, timeout=30)
    assert response.status_code == 202, response.text
    done = wait_for_batch(api_url, response.json()["id"])
    items = {i["ref"]: i for i in batch_results(api_url, done["id"])}
    assert items["first"]["status"] == "succeeded"
    assert items[urls[1]]["status"] == "succeeded"  # ref defaults to the URL
    assert (
        items["gone"]["error"]["code"] == "fetch_failed"
        and "404" in items["gone"]["error"]["message"]
    )


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "not a url"])
def test_non_http_urls_are_refused(api_url: str, url: str) -> None:
    response = http.post(f"{api_url}/v1/batches", json={"images": [{"url": url}]}, timeout=10)
    assert response.status_code == 400
    assert "http" in response.json()["error"]["message"]


def test_idempotency_key_returns_the_same_batch(api_url: str, tiny_catalog: Path) -> None:
    files = [("images", (p.name, p.read_bytes())) for p in catalog_images(tiny_catalog, 2)]
    headers = {"Idempotency-Key": f"order-{time.time_ns()}"}
    first = http.post(f"{api_url}/v1/batches", files=files, headers=headers, timeout=30)
    again = http.post(f"{api_url}/v1/batches", files=files, headers=headers, timeout=30)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = http.post(f"{api_url}/v1/batches", files=files, timeout=30)
    assert other.json()["id"] != first.json()["id"]


def test_identical_images_are_classified_once(api_url: str, tiny_catalog: Path) -> None:
    data = catalog_images(tiny_catalog, 1)[0].read_bytes()
    files = [("images", (f"copy{i}.png", data)) for i in range(3)]
    response = http.post(f"{api_url}/v1/batches", files=files, timeout=30)
    done = wait_for_batch(api_url, response.json()["id"])
    items = batch_results(api_url, done["id"])
    assert done["counts"]["succeeded"] == 3
    assert len({json.dumps(i["result"], sort_keys=True) for i in items}) == 1
    assert [i["ref"] for i in items] == ["copy0.png", "copy1.png", "copy2.png"]


def test_exports_stream_the_whole_batch(api_url: str, tiny_catalog: Path) -> None:
    files = [("images", (p.name, p.read_bytes())) for p in catalog_images(tiny_catalog, 5)]
    batch_id = http.post(f"{api_url}/v1/batches", files=files, timeout=30).json()["id"]
    wait_for_batch(api_url, batch_id)
    url = f"{api_url}/v1/batches/{batch_id}/results"
    as_csv = http.get(url, headers={"Accept": "text/csv"}, timeout=10)
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["ref"] for r in rows] == [name for name, _ in (f for _, f in files)]
    assert all(r["sku"] and float(r["sku_confidence"]) >= 0 for r in rows)
    as_ndjson = http.get(url, headers={"Accept": "application/x-ndjson"}, timeout=10)
    lines = [json.loads(line) for line in as_ndjson.text.splitlines()]
    assert [line["ref"] for line in lines] == [r["ref"] for r in rows]
    assert all(line["batch_id"] == batch_id for line in lines)


def test_two_workers_share_one_batch(
    api_url: str,
    tiny_catalog: Path,
    trained: str,
    inference_worker: WorkerProcess,
    service_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    second = start_worker("second", service_env, settings, tmp_path / "second.log", trained)
    before = {w.name: len(w.log.read_text()) for w in (inference_worker, second)}
    try:
        images = catalog_images(tiny_catalog, 60)
        files = [("images", (f"{i}-{p.name}", p.read_bytes())) for i, p in enumerate(images)]
        batch_id = http.post(f"{api_url}/v1/batches", files=files, timeout=60).json()["id"]
        done = wait_for_batch(api_url, batch_id)
    finally:
        second.stop()
    assert done["counts"]["succeeded"] == 60 and done["total"] == 60
    items = batch_results(api_url, batch_id)
    assert len(items) == 60 and len({i["id"] for i in items}) == 60
    assert all(i["status"] == "succeeded" for i in items)
    served = {
        w.name: w.log.read_text()[before[w.name] :].count("chunk of 4")
        for w in (inference_worker, second)
    }
    assert all(count > 0 for count in served.values()), served
