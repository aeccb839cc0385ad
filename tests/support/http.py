"""Calling the API as a tenant: the tests' HTTP session, other tenants' sessions, and webhook
delivery logs."""

from __future__ import annotations

import redis
import requests
from flask.testing import FlaskClient

from shared.api_keys import KeyStore
from shared.settings import Settings

TENANT = "tests"
# The tests' HTTP client; the session's `api_key` fixture puts its key in the headers.
http = requests.Session()


def bearer(api_key: str | None) -> dict[str, str]:
    """Headers that send `api_key` instead of the test tenant's key (none: keep that one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def tenant_session(settings: Settings, tenant: str) -> requests.Session:
    """An HTTP client holding a new API key of `tenant`."""
    session = requests.Session()
    key = KeyStore(redis.Redis.from_url(settings.redis_url)).create(tenant)
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def authorized(client: FlaskClient, key: str) -> FlaskClient:
    """A Flask test client that sends the API key with every request."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def deliveries_of(api_url: str, webhook_id: str, api_key: str | None = None) -> list[dict]:
    """A subscription's delivery log through the API, newest first."""
    response = http.get(
        f"{api_url}/v1/webhooks/{webhook_id}/deliveries", headers=bearer(api_key), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]
