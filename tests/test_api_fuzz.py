"""Property-based fuzzing of the live API from its own OpenAPI description: whatever the inputs,
no request gets a server error."""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from shared.api_keys import KeyStore
from shared.settings import Settings
from web.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())
# With a worker up, /readyz is 200 too: its 503 is reserved for "not ready".
pytestmark = pytest.mark.usefixtures("inference_worker")


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, api_url: str, settings_: Settings) -> None:
    key = _fuzz_key(settings_)
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {key}"},
        checks=[not_a_server_error],
        timeout=30,
    )


_KEYS: dict[str, str] = {}


def _fuzz_key(settings_: Settings) -> str:
    # A tenant of its own, so the subscriptions it creates never see other tests' events.
    if settings_.redis_url not in _KEYS:
        _KEYS[settings_.redis_url] = KeyStore(redis.Redis.from_url(settings_.redis_url)).create(
            "fuzz"
        )
    return _KEYS[settings_.redis_url]
