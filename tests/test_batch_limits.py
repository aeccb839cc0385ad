"""Batch requests refused as a whole, and cancel before any worker ran: the real Flask app on a
Redis database of its own (no worker listens there until the test starts one)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from shared.settings import Settings
from tests.support.images import catalog_images
from tests.support.isolation import Isolated, OwnWorkers, isolated_app
from tests.support.polling import wait_until


@pytest.fixture()
def quiet(own_db: Settings) -> Isolated:
    """The app with at most 3 images a batch and chunks of 2, on the test's own database."""
    return isolated_app(replace(own_db, max_batch_images=3, chunk_size=2))


@pytest.fixture()
def client(quiet: Isolated) -> FlaskClient:
    """The quiet app's test client."""
    return quiet.client


def _png(catalog: Path, i: int = 0) -> bytes:
    return catalog_images(catalog)[i].read_bytes()


def test_too_many_images_is_413(client: FlaskClient, tiny_catalog: Path) -> None:
    data = {"images": [(io.BytesIO(_png(tiny_catalog, i)), f"{i}.png") for i in range(4)]}
    response = client.post("/v1/batches", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert "at most 3 images" in response.json["error"]["message"]


def test_archive_over_the_limit_is_413(client: FlaskClient, tiny_catalog: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(5):
            archive.writestr(f"{i}.png", _png(tiny_catalog, i))
    response = client.post(
        "/v1/batches",
        data={"archive": (io.BytesIO(buffer.getvalue()), "a.zip")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": {"metadata": "{}"}, "content_type": "multipart/form-data"}, 400),
        ({"json": {"images": []}}, 400),
        ({"json": {"images": [{"ref": "no url"}]}}, 400),
        ({"data": b"x", "content_type": "text/plain"}, 415),
        (
            {
                "data": {"archive": (io.BytesIO(b"not an archive" * 50), "a.zip")},
                "content_type": "multipart/form-data",
            },
            415,
        ),
        (
            {"json": {"images": [{"url": "http://x.invalid/a.png"}], "callback_url": "gopher://x"}},
            400,
        ),
    ],
)
def test_bad_batch_requests(client: FlaskClient, kwargs: dict, status: int) -> None:
    response = client.post("/v1/batches", **kwargs)
    assert response.status_code == status, response.json
    assert set(response.json["error"]) == {"code", "message"}


@pytest.mark.parametrize("query", ["cursor=-1", "limit=0", "limit=5000", "cursor=abc"])
def test_bad_result_queries(client: FlaskClient, tiny_catalog: Path, query: str) -> None:
    data = {"images": [(io.BytesIO(_png(tiny_catalog)), "a.png")]}
    batch = client.post("/v1/batches", data=data, content_type="multipart/form-data").json
    assert client.get(f"/v1/batches/{batch['id']}/results?{query}").status_code == 400
    assert client.get("/v1/batches/bat_nope").status_code == 404


def test_cancel_before_any_worker_then_a_worker_skips_it(
    client: FlaskClient,
    tiny_catalog: Path,
    quiet: Isolated,
    trained: str,
    own_workers: OwnWorkers,
) -> None:
    data = {"images": [(io.BytesIO(_png(tiny_catalog, i)), f"{i}.png") for i in range(3)]}
    batch = client.post("/v1/batches", data=data, content_type="multipart/form-data").json
    assert batch["counts"]["queued"] == 3
    canceled = client.post(f"/v1/batches/{batch['id']}/cancel").json
    assert canceled["status"] == "canceled" and canceled["counts"]["canceled"] == 3
    assert client.post(f"/v1/batches/{batch['id']}/cancel").json["status"] == "canceled"
    log = own_workers.start(quiet, "late", trained).log
    wait_until(
        lambda: "2 skipped" in log.read_text() and "1 skipped" in log.read_text(),
        60,
        "the worker skipping both canceled chunks",
        log,
    )
    items = client.get(f"/v1/batches/{batch['id']}/results").json["items"]
    assert [i["status"] for i in items] == ["canceled"] * 3
    assert all(i["error"]["code"] == "canceled" for i in items)
