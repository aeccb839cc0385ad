"""One image in over HTTP, a two-stage prediction out: the real API, Redis and Celery worker."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import requests
from PIL import Image

from shared import keys, singles
from shared.image_formats import ACCEPTED_NAMES
from shared.settings import Settings
from tests.support.http import http
from tests.support.images import sample_image
from tests.support.isolation import isolated_app

pytestmark = pytest.mark.usefixtures("inference_worker")


def _submit(api_url: str, data: bytes, name: str = "shoe.png", **form: str) -> requests.Response:
    return http.post(f"{api_url}/v1/jobs", files={"image": (name, data)}, data=form, timeout=10)


def _error(response: requests.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def test_submit_poll_result(api_url: str, tiny_catalog: Path, trained: str) -> None:
    image = sample_image(tiny_catalog)
    response = _submit(api_url, image.read_bytes(), name=image.name, metadata='{"shelf": 4}')
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and job["id"].startswith("job_")
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["ref"] == image.name and job["metadata"] == {"shelf": 4}

    done = http.get(f"{api_url}{response.headers['Location']}?wait=30", timeout=40).json()
    assert done["status"] == "succeeded", done
    assert done["model_version"] == trained
    assert done["finished_at"] and done["error"] is None
    result = done["result"]
    catalog_models = {p.name for p in tiny_catalog.iterdir() if p.is_dir()}
    assert result["model"]["label"] in catalog_models
    assert result["sku"]["label"] in {p.name for p in tiny_catalog.glob("*/*") if p.is_dir()}
    assert (tiny_catalog / result["model"]["label"] / result["sku"]["label"]).is_dir()
    for key in ("model", "sku"):
        assert 0.0 <= result[key]["confidence"] <= 1.0
    candidates = result["candidates"]
    assert 1 <= len(candidates) <= 5
    assert candidates[0]["sku"] == result["sku"]["label"]
    assert [c["confidence"] for c in candidates] == sorted(
        (c["confidence"] for c in candidates), reverse=True
    )


def test_base64_submission(api_url: str, tiny_catalog: Path) -> None:
    encoded = base64.b64encode(sample_image(tiny_catalog).read_bytes()).decode()
    response = http.post(
        f"{api_url}/v1/jobs", json={"image_base64": encoded, "ref": "b64"}, timeout=10
    )
    assert response.status_code == 202
    job = http.get(f"{api_url}/v1/jobs/{response.json()['id']}?wait=30", timeout=40).json()
    assert job["status"] == "succeeded" and job["ref"] == "b64"


def test_unknown_job_is_404_with_error_shape(api_url: str) -> None:
    response = http.get(f"{api_url}/v1/jobs/job_doesnotexist", timeout=10)
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_undecodable_upload_is_refused(api_url: str) -> None:
    response = _submit(api_url, b"\x89PNG\r\n\x1a\n but no image follows", name="shoe.png")
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "invalid_image" and "not a decodable image" in error["message"]


def test_unsupported_format_is_415(api_url: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="ICO")
    for data, named in ((buffer.getvalue(), "ICO"), (b"this is not an image at all", "")):
        response = _submit(api_url, data, name="shoe.jpg")  # the name does not matter
        assert response.status_code == 415
        message = _error(response)["message"]
        assert named in message and ACCEPTED_NAMES in message


def test_truncated_image_fails_its_job_with_a_clear_error(api_url: str, tiny_catalog: Path) -> None:
    data = sample_image(tiny_catalog).read_bytes()
    response = _submit(api_url, data[: len(data) // 2])  # the header is intact, pixels are not
    assert response.status_code == 202
    job = http.get(f"{api_url}/v1/jobs/{response.json()['id']}?wait=30", timeout=40).json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_image" and job["result"] is None


def test_a_job_that_cannot_be_queued_gives_its_place_back(
    own_db: Settings, tiny_catalog: Path
) -> None:
    isolated = isolated_app(own_db)
    client, conn = isolated.client, isolated.conn
    conn.set(singles.PENDING, "not a list")  # stored, then handing it to the workers fails
    image = sample_image(tiny_catalog).read_bytes()
    response = client.post(
        "/v1/jobs",
        data={"image": (io.BytesIO(image), "shoe.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 500 and response.json["error"]["code"] == "internal_error"
    assert int(conn.get(keys.PENDING_IMAGES) or 0) == 0  # SKUAI_MAX_QUEUED does not shrink
    assert list(conn.scan_iter(keys.job("*"))) == [] and list(conn.scan_iter(keys.image("*"))) == []


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"files": {"picture": ("a.png", b"x")}}, 400, "bad_request"),
        ({"data": b"raw", "headers": {"Content-Type": "image/png"}}, 415, "unsupported_media_type"),
        ({"json": {"image_base64": "%%%"}}, 400, "bad_request"),
        ({"json": ["not", "an", "object"]}, 400, "bad_request"),
        ({"files": {"image": ("a.png", b"x")}, "data": {"metadata": "[1]"}}, 400, "bad_request"),
    ],
)
def test_malformed_requests(api_url: str, request_kwargs: dict, status: int, code: str) -> None:
    response = http.post(f"{api_url}/v1/jobs", timeout=10, **request_kwargs)
    assert response.status_code == status
    assert _error(response)["code"] == code


@pytest.mark.parametrize("wait", ["-1", "31", "soon"])
def test_wait_out_of_range_is_400(api_url: str, wait: str) -> None:
    response = http.get(f"{api_url}/v1/jobs/job_x?wait={wait}", timeout=10)
    assert response.status_code == 400
    assert "wait" in _error(response)["message"]


def test_unknown_route_uses_the_error_shape(api_url: str) -> None:
    response = http.delete(f"{api_url}/healthz", timeout=10)
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"


def test_health_ready_and_openapi(api_url: str, trained: str) -> None:
    assert http.get(f"{api_url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = http.get(f"{api_url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json()["checks"]["model_versions"] == [trained]
    spec = http.get(f"{api_url}/openapi.json", timeout=10).json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/healthz", "/readyz"} <= set(spec["paths"])
    docs = http.get(f"{api_url}/docs/", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
