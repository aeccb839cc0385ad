"""Property-based fuzzing of the live API from its own OpenAPI description: whatever the inputs,
no request gets a server error and every answer conforms to the document (status, content type,
body schema); very deep or very large JSON gets a 4xx in the error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from shared.api_keys import KeyStore
from shared.settings import Settings
from web.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())
# Requests the document forbids (a field past its limit, of the wrong type, missing): each must be
# refused with a 4xx, so a limit the views do not enforce fails here.
invalid = schemathesis.openapi.from_dict(openapi_document())
invalid.config.generation.update(modes=[GenerationMode.NEGATIVE])
# With a worker up, /readyz is 200 too: its 503 is reserved for "not ready".
pytestmark = pytest.mark.usefixtures("inference_worker")


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_answers_conform_to_the_document(
    case: schemathesis.Case, api_url: str, settings_: Settings
) -> None:
    key = _fuzz_key(settings_)
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {key}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=30,
    )


@invalid.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_what_the_document_forbids_is_refused(
    case: schemathesis.Case, api_url: str, settings_: Settings
) -> None:
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {_fuzz_key(settings_, 'invalid')}"},
        checks=[not_a_server_error, negative_data_rejection, response_schema_conformance],
        timeout=30,
    )


def test_job_submission_documents_every_field_it_reads() -> None:
    # The drift that started issue 17: POST /v1/jobs read callback_url, the document left it out.
    content = openapi_document()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    fields = {kind: set(_schema(body["schema"])["properties"]) for kind, body in content.items()}
    assert fields == {
        "application/json": {"image_base64", "ref", "metadata", "callback_url"},
        "multipart/form-data": {"image", "metadata", "callback_url"},
    }


def _json_bodies() -> dict[str, list[str]]:
    """Every POST that takes a JSON body, with the top-level fields its schema names."""
    found = {}
    for path, operations in openapi_document()["paths"].items():
        content = operations.get("post", {}).get("requestBody", {}).get("content", {})
        if "application/json" in content:
            found[path] = sorted(_schema(content["application/json"]["schema"])["properties"])
    return found


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or the component it refers to."""
    if "$ref" not in schema:
        return schema
    return openapi_document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]


JSON_BODIES = _json_bodies()
# Raw JSON text (a 100k-deep value cannot go through json.dumps), each a few hundred kB to 2 MB.
HOSTILE_VALUES = {
    "deep array": lambda n: "[" * n + "]" * n,
    "deep object": lambda n: '{"a":' * n + "0" + "}" * n,
    "long string": lambda n: json.dumps("A" * n * 10),
    "wide object": lambda n: "{" + ",".join(f'"k{i}":{i}' for i in range(n)) + "}",
    "long array": lambda n: "[" + ",".join(["0"] * n) + "]",
}


@st.composite
def hostile_requests(draw: Any) -> tuple[str, str]:
    """A JSON POST whose whole body, or one field of it, is very deep or very large."""
    path = draw(st.sampled_from(sorted(JSON_BODIES)))
    value = HOSTILE_VALUES[draw(st.sampled_from(sorted(HOSTILE_VALUES)))](
        draw(st.sampled_from([33, 1_000, 100_000]))
    )
    field = draw(st.sampled_from([None, *JSON_BODIES[path]]))
    return path, value if field is None else "{" + json.dumps(field) + ":" + value + "}"


@given(request=hostile_requests())
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_deep_and_large_json_gets_a_4xx(
    request: tuple[str, str], api_url: str, settings_: Settings
) -> None:
    path, body = request
    response = requests.post(
        api_url + path,
        data=body,
        headers={
            "Authorization": f"Bearer {_fuzz_key(settings_, 'hostile')}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )
    # Its own key, so never 429: the refusal comes from reading the body.
    assert 400 <= response.status_code < 500 and response.status_code != 429, (
        path,
        body[:80],
        response.text[:200],
    )
    assert set(response.json()["error"]) == {"code", "message"}


_KEYS: dict[tuple[str, str], str] = {}


def _fuzz_key(settings_: Settings, purpose: str = "schema") -> str:
    # A tenant of its own, so the subscriptions it creates never see other tests' events; a key
    # per purpose, so each has its own rate-limit bucket.
    if (settings_.redis_url, purpose) not in _KEYS:
        _KEYS[settings_.redis_url, purpose] = KeyStore(
            redis.Redis.from_url(settings_.redis_url)
        ).create("fuzz")
    return _KEYS[settings_.redis_url, purpose]
