"""Tenants and keys: 401 without a good key; another tenant's resources are 404 on every
endpoint; rate limits and the global queue limit answer 429 with Retry-After."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import requests

from shared.api_keys import KeyStore
from shared.settings import Settings
from tests.support.http import http, tenant_session
from tests.support.images import sample_image
from tests.support.isolation import Isolated, isolated_app
from tests.support.processes import run_skuai

pytestmark = pytest.mark.usefixtures("inference_worker")


@pytest.fixture(scope="module")
def other(settings: Settings) -> requests.Session:
    """A client of another tenant."""
    return tenant_session(settings, "other-tenant")


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk_not-a-key", "Basic abc", "sk_x"])
def test_missing_or_bad_key_is_401(api_url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{api_url}/v1/jobs/job_x", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_health_and_docs_need_no_key(api_url: str) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs/"):
        assert requests.get(f"{api_url}{path}", timeout=10).status_code == 200, path


def test_another_tenant_sees_nothing(
    api_url: str, tiny_catalog: Path, other: requests.Session
) -> None:
    image = sample_image(tiny_catalog).read_bytes()
    job = http.post(f"{api_url}/v1/jobs", files={"image": ("a.png", image)}, timeout=10).json()
    batch = http.post(
        f"{api_url}/v1/batches", files=[("images", ("a.png", image))], timeout=10
    ).json()
    hook = http.post(
        f"{api_url}/v1/webhooks",
        json={"url": "http://127.0.0.1:9/h", "events": ["job.failed"]},
        timeout=10,
    ).json()
    try:
        attempts = [
            ("GET", f"/v1/jobs/{job['id']}"),
            ("DELETE", f"/v1/jobs/{job['id']}"),
            ("GET", f"/v1/batches/{batch['id']}"),
            ("GET", f"/v1/batches/{batch['id']}/results"),
            ("POST", f"/v1/batches/{batch['id']}/cancel"),
            ("GET", f"/v1/webhooks/{hook['id']}"),
            ("DELETE", f"/v1/webhooks/{hook['id']}"),
            ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
            ("POST", f"/v1/webhooks/{hook['id']}/deliveries/msg_x/retry"),
        ]
        for method, path in attempts:
            response = other.request(method, f"{api_url}{path}", timeout=10)
            assert response.status_code == 404, (method, path, response.status_code)
            assert response.json()["error"]["code"] == "not_found"
        listed = other.get(f"{api_url}/v1/webhooks", timeout=10).json()["items"]
        assert hook["id"] not in [h["id"] for h in listed]
        assert http.get(f"{api_url}/v1/jobs/{job['id']}", timeout=10).status_code == 200
    finally:
        http.delete(f"{api_url}/v1/webhooks/{hook['id']}", timeout=10)


def _app(own_db: Settings, **changes: object) -> Isolated:
    return isolated_app(replace(own_db, **changes), "limited")


def test_rate_limit_is_429_with_retry_after(own_db: Settings) -> None:
    client = _app(own_db, rate_limit=1.0, rate_burst=3).client
    statuses = [client.get("/v1/jobs/job_x").status_code for _ in range(5)]
    assert statuses[:3] == [404, 404, 404] and statuses[3:] == [429, 429]
    limited = client.get("/v1/jobs/job_x")
    assert limited.json["error"]["code"] == "too_many_requests"
    assert int(limited.headers["Retry-After"]) >= 1


def test_queue_limit_is_429_with_retry_after(own_db: Settings, tiny_catalog: Path) -> None:
    client = _app(own_db, max_queued=2).client
    image = sample_image(tiny_catalog).read_bytes()

    def submit() -> int:
        data = {"image": (io.BytesIO(image), "a.png")}
        return client.post("/v1/jobs", data=data, content_type="multipart/form-data").status_code

    assert [submit(), submit()] == [202, 202]  # nothing consumes the test's database: they wait
    response = client.post(
        "/v1/jobs", data={"image": (io.BytesIO(image), "a.png")}, content_type="multipart/form-data"
    )
    assert response.status_code == 429 and response.json["error"]["code"] == "queue_full"
    assert int(response.headers["Retry-After"]) > 0


def test_keys_commands(service_env: dict[str, str]) -> None:
    def skuai(*args: str) -> subprocess.CompletedProcess[str]:
        return run_skuai("keys", *args, env=service_env, timeout=60)

    created = json.loads(skuai("create", "--tenant", "acme", "--json").stdout)
    assert created["api_key"].startswith("sk_")
    assert created["webhook_secret"].startswith("whsec_")
    listed = json.loads(skuai("list", "--tenant", "acme", "--json").stdout)
    assert len(listed) == 1 and created["api_key"] not in json.dumps(listed)
    assert skuai("revoke", listed[0]["id"]).returncode == 0
    assert json.loads(skuai("list", "--tenant", "acme", "--json").stdout) == []
    bad = skuai("create", "--tenant", "Not A Name")
    assert bad.returncode == 1 and bad.stderr.startswith("error: tenant 'Not A Name'")


def test_keys_are_stored_hashed(settings: Settings) -> None:
    conn = redis.Redis.from_url(settings.redis_url)
    key = KeyStore(conn).create("hashed")
    dump = b"".join(
        k + b"".join(conn.hgetall(k).values()) for k in conn.scan_iter("skuai:apikey:*")
    )
    assert key.encode() not in dump
