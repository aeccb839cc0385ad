"""`/metrics` for Prometheus: the API's own request metrics (summed over gunicorn workers with
prometheus-client's multiprocess mode) and the cluster metrics the workers keep in Redis.
They name worker hosts, pids and queue sizes, so only loopback callers see them, or, when
SKUAI_METRICS_TOKEN is set, callers that send it as a bearer token."""

from __future__ import annotations

import hmac
import ipaddress
import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from shared.errors import Forbidden, Unauthorized
from shared.metrics import ClusterCollector
from shared.sku_share import SkuShareCollector
from web.openapi import declare
from web.services import services

bp = Blueprint("metrics", __name__)
REQUESTS = Counter(
    "skuai_http_requests", "API requests by route and status", ("method", "route", "status")
)
LATENCY = Histogram(
    "skuai_http_request_duration_seconds",
    "API request latency by route",
    ("method", "route"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# A proxy on the same host connects from loopback on behalf of someone else; these say so.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def instrument(app: Flask) -> None:
    """Time every request and count it by route template (never by raw path: ids are unbounded)."""

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _record(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        if "started" in g:
            LATENCY.labels(request.method, route).observe(time.perf_counter() - g.started)
        return response


@bp.get("/metrics")
@declare(
    ok={200: (None, "Every metric, in the Prometheus text format")},
    errors=(401, 403),
    public=True,
    operation_id="metrics",
)
def metrics() -> Response:
    """Everything, in the Prometheus text format."""
    check_access(services().settings.metrics_token)
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(ClusterCollector(services().conn))
    registry.register(SkuShareCollector(services().conn, top=services().settings.sku_share_top))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def check_access(token: str | None) -> None:
    """With a token, only requests bearing it (from anywhere); without, loopback callers only."""
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise Unauthorized("send SKUAI_METRICS_TOKEN as 'Authorization: Bearer <token>'")
    elif not _from_loopback():
        raise Forbidden(
            "/metrics answers loopback callers only; set SKUAI_METRICS_TOKEN to scrape it from "
            "elsewhere with that bearer token"
        )


def _from_loopback() -> bool:
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        peer = ipaddress.ip_address((request.remote_addr or "").split("%", 1)[0])
    except ValueError:  # a Unix socket, or no peer at all: not known to be local
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return peer.is_loopback
