"""Inputs at the edges, against the real API: JSON nested 100k deep, URLs that do not parse,
cursors past 64 bits, refs that spreadsheets would run, IPv4 addresses hidden in IPv6 forms,
and who may read /metrics."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from shared.errors import BadRequest
from shared.exports import csv_lines
from shared.jobs import Job
from shared.settings import Settings
from shared.url_guard import address_allowed, check_url
from tests.support.http import tenant_session
from tests.support.isolation import isolated_app
from tests.support.processes import launch_api, wait_healthy

DEEP = 100_000
DEEP_ARRAY = "[" * DEEP + "]" * DEEP
DEEP_OBJECT = '{"a":' * DEEP + "1" + "}" * DEEP
SCRAPE_TOKEN = "scrape-token-for-the-tests-0123"


@pytest.fixture(scope="module")
def edge_http(settings: Settings) -> requests.Session:
    """A client with a tenant of its own, so its batches' events reach nobody else's hooks."""
    return tenant_session(settings, "edge-inputs")


def _assert_refused(response: requests.Response, status: int = 400) -> None:
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert error["code"] and error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/jobs", DEEP_ARRAY),
        ("/v1/jobs", '{"image_base64": "aGVsbG8=", "metadata": ' + DEEP_OBJECT + "}"),
        ("/v1/batches", DEEP_OBJECT),
        ("/v1/batches", '{"images": ' + DEEP_ARRAY + "}"),
        ("/v1/webhooks", DEEP_ARRAY),
        ("/v1/webhooks", '{"url": "http://example.com/", "events": ' + DEEP_ARRAY + "}"),
        # Under the parser's limit, but deeper than any request: stored, it would break reads.
        (
            "/v1/jobs",
            '{"image_base64": "aGVsbG8=", "metadata": {"a": ' + "[" * 900 + "]" * 900 + "}}",
        ),
    ],
)
def test_deep_json_is_a_400(
    api_url: str, edge_http: requests.Session, path: str, body: str
) -> None:
    response = edge_http.post(
        api_url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    _assert_refused(response)
    assert "levels deep" in response.json()["error"]["message"]


def test_deep_metadata_in_a_form_is_a_400(api_url: str, edge_http: requests.Session) -> None:
    response = edge_http.post(
        f"{api_url}/v1/jobs",
        files={"image": ("a.png", b"not an image")},
        # 20k deep: past the parser's recursion limit, under Werkzeug's 500 kB for a form field.
        data={"metadata": '{"a":' * 20_000 + "1" + "}" * 20_000},
        timeout=30,
    )
    _assert_refused(response)


BROKEN_URL = "http://[1.1.1.1/"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/webhooks", {"url": BROKEN_URL, "events": ["job.succeeded"]}),
        ("/v1/jobs", {"image_base64": "aGVsbG8=", "callback_url": BROKEN_URL}),
        (
            "/v1/batches",
            {"images": [{"url": "http://example.com/a.png"}], "callback_url": BROKEN_URL},
        ),
        ("/v1/batches", {"images": [{"url": BROKEN_URL, "ref": "a"}]}),
    ],
)
def test_unparsable_url_is_a_400(
    api_url: str, edge_http: requests.Session, path: str, body: dict[str, object]
) -> None:
    _assert_refused(edge_http.post(api_url + path, json=body, timeout=30))


def _upload_batch(api_url: str, client: requests.Session, refs: list[str]) -> str:
    # Bytes that are no image fail at upload: the batch is complete without queueing any work.
    files = [("images", (ref, b"not an image")) for ref in refs]
    response = client.post(f"{api_url}/v1/batches", files=files, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("cursor", ["9223372036854775807", "9223372036854775808", "2"])
def test_cursor_past_the_batch_is_a_400(
    api_url: str, edge_http: requests.Session, cursor: str
) -> None:
    batch = _upload_batch(api_url, edge_http, ["only.png"])
    url = f"{api_url}/v1/batches/{batch}/results"
    _assert_refused(edge_http.get(url, params={"cursor": cursor}, timeout=10))
    end = edge_http.get(url, params={"cursor": "1"}, timeout=10).json()
    assert end == {"items": [], "next_cursor": None}


FORMULAS = ["=1+2", "+1", "-1", "@SUM(A1)", "=cmd|' /C calc'!A0"]


def test_csv_export_neutralises_formula_refs(api_url: str, edge_http: requests.Session) -> None:
    batch = _upload_batch(api_url, edge_http, [*FORMULAS, "photo.png"])
    url = f"{api_url}/v1/batches/{batch}/results"
    text = edge_http.get(url, headers={"Accept": "text/csv"}, timeout=10).text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["ref"] for row in rows] == [*("'" + f for f in FORMULAS), "photo.png"]
    # The other formats keep the values as they were sent.
    ndjson = edge_http.get(url, headers={"Accept": "application/x-ndjson"}, timeout=10).text
    assert [json.loads(line)["ref"] for line in ndjson.splitlines()] == [*FORMULAS, "photo.png"]
    page = edge_http.get(url, timeout=10).json()
    assert [item["ref"] for item in page["items"]] == [*FORMULAS, "photo.png"]


def test_csv_neutralises_tab_cr_and_every_text_cell() -> None:
    # Tab and CR cannot travel in a multipart filename, so these rows are built directly.
    jobs = [
        Job(
            id="job_1",
            tenant="t",
            ref="\t=1+2",
            status="failed",
            error={"code": "x", "message": "-bad"},
        ),
        Job(
            id="job_2", tenant="t", ref="\r@x", result={"model": {"label": "+m", "confidence": 0.5}}
        ),
        Job(id="job_3", tenant="t", ref="a-b"),
    ]
    rows = list(
        csv.DictReader(io.StringIO("".join(csv_lines(job.to_public() for job in jobs)), newline=""))
    )
    assert [row["ref"] for row in rows] == ["'\t=1+2", "'\r@x", "a-b"]
    assert rows[0]["error_message"] == "'-bad"
    assert rows[1]["model"] == "'+m" and rows[1]["model_confidence"] == "0.5"


# IPv6 forms that carry an IPv4 address, and whether that address is one we may connect to.
IPV4_INSIDE_IPV6 = [
    ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
    ("::ffff:127.0.0.1", False),  # IPv4-mapped
    ("::ffff:0:7f00:1", False),  # IPv4-translated
    ("64:ff9b::7f00:1", False),  # NAT64
    ("64:ff9b::a00:1", False),  # NAT64 to 10.0.0.1
    ("64:ff9b:1::a00:1", False),  # local-use NAT64
    ("2002:7f00:1::1", False),  # 6to4
    ("2002:c0a8:101::1", False),  # 6to4 of 192.168.1.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
    ("::ffff:8.8.8.8", True),
    ("64:ff9b::808:808", True),
    ("2002:808:808::1", True),
    ("2606:4700:4700::1111", True),  # plain global IPv6
]


@pytest.mark.parametrize(("address", "allowed"), IPV4_INSIDE_IPV6)
def test_ipv4_inside_ipv6_is_judged_as_ipv4(address: str, allowed: bool) -> None:
    assert address_allowed(address, allow_private=False) is allowed
    if not allowed:
        with pytest.raises(BadRequest, match="private or reserved"):
            check_url(f"http://[{address}]/hook", allow_private=False)


def test_api_refuses_a_webhook_to_hidden_loopback(own_db: Settings) -> None:
    client = isolated_app(replace(own_db, allow_private_urls=False)).client
    for address in ("::7f00:1", "64:ff9b::7f00:1", "2002:7f00:1::1"):
        response = client.post(
            "/v1/webhooks", json={"url": f"http://[{address}]:8080/", "events": ["job.succeeded"]}
        )
        assert response.status_code == 400, (address, response.get_json())
        assert "private or reserved" in response.get_json()["error"]["message"]


def _interface_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (what a remote caller appears as)."""
    candidates: list[str] = []
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        candidates += [str(info[4][0]) for info in infos]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe, contextlib.suppress(OSError):
        probe.connect(("192.0.2.1", 9))  # UDP: picks the outgoing address, sends nothing
        candidates.append(probe.getsockname()[0])
    return next((a for a in candidates if not a.startswith("127.") and a != "0.0.0.0"), None)


@pytest.fixture(scope="module")
def exposed_apis(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Two API processes bound on a non-loopback address of this machine, without and with
    SKUAI_METRICS_TOKEN; requests to them come from that address, not from loopback."""
    host = _interface_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call the API from")
    logs = tmp_path_factory.mktemp("logs")
    envs = {"open": service_env, "token": {**service_env, "SKUAI_METRICS_TOKEN": SCRAPE_TOKEN}}
    # Both start at once; then each is waited for.
    started = {name: launch_api(env, logs / f"{name}.log", host=host) for name, env in envs.items()}
    try:
        for name, api in started.items():
            wait_healthy(api, logs / f"{name}.log")
        yield {name: api.url for name, api in started.items()}
    finally:
        for api in started.values():
            api.stop()


def test_metrics_refuse_a_remote_caller_by_default(exposed_apis: dict[str, str]) -> None:
    response = requests.get(f"{exposed_apis['open']}/metrics", timeout=10)
    _assert_refused(response, 403)
    assert "skuai_" not in response.text


def test_metrics_refuse_a_proxied_loopback_caller(api_url: str) -> None:
    assert requests.get(f"{api_url}/metrics", timeout=10).status_code == 200
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = requests.get(f"{api_url}/metrics", headers={header: "203.0.113.9"}, timeout=10)
        _assert_refused(response, 403)


def test_metrics_with_a_token_answer_a_remote_caller_that_sends_it(
    exposed_apis: dict[str, str],
) -> None:
    url = f"{exposed_apis['token']}/metrics"
    _assert_refused(requests.get(url, timeout=10), 401)
    wrong = {"Authorization": "Bearer " + SCRAPE_TOKEN[:-1] + "x"}
    _assert_refused(requests.get(url, headers=wrong, timeout=10), 401)
    right = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    response = requests.get(url, headers=right, timeout=10)
    assert response.status_code == 200
    assert "skuai_queue_depth" in response.text
