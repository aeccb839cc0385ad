"""`/metrics` for Prometheus: the API's own request metrics (summed over gunicorn workers with
prometheus-client's multiprocess mode) and the cluster metrics the workers keep in Redis."""

from __future__ import annotations

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

from shared.metrics import ClusterCollector
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
def metrics() -> Response:
    """Everything, in the Prometheus text format."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(ClusterCollector(services().conn))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
