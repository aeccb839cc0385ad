"""Drift you can see (issue 20): a shifted stream through the real API and worker moves the
drift metrics on /metrics — the top-confidence histogram per version, the decisions per version
and the tenant's SKU shares over its window of latest predictions — by exactly what the worker
answered; the window slides and its labels stay bounded (SkuShares on a real Redis).

The session's tiny version is trained for seconds, so its confidences and decisions are not
asserted, only read: this test checks that the metrics follow the worker's answers exactly,
whatever they are, and that the stream's shift shows where it must: the blank photos (the same
pixels) all get one SKU, whose share of the tenant's window rises. That the alert rules fire on a
confidence drop and a rise of unknown answers is deploy/prometheus/alerts_test.yml's job: the
promtool tests below run it, check the rules and the scrape config, and check that the Grafana
dashboard and the alerts read only series skuai's /metrics exports."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml
from flask.testing import FlaskClient
from PIL import Image
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.decisions import DECISIONS
from shared.metrics import CONFIDENCE_BUCKETS
from shared.settings import Settings
from shared.sku_share import IDLE_SECONDS, SkuShareCollector, SkuShares
from tests.support import metrics
from tests.support.http import http
from tests.support.images import catalog_images
from tests.support.isolation import OwnWorkers, isolated_app
from tests.support.polling import wait_until

HISTOGRAM = "skuai_top_confidence"


def _page(client: FlaskClient) -> metrics.Samples:
    return metrics.samples(client.get("/metrics").get_data(as_text=True))


def _blank(salt: int) -> tuple[str, bytes]:
    """A flat grey photo, as a broken camera sends; distinct bytes, the same pixels."""
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(out, "PNG")
    return f"blank-{salt}.png", out.getvalue() + salt.to_bytes(4, "big")


def _answers(client: FlaskClient, files: list[tuple[str, bytes]]) -> list[dict]:
    """Every result of a batch of `files` once it completed, in upload order."""
    parts = [(io.BytesIO(data), name) for name, data in files]
    response = client.post("/v1/batches", data={"images": parts})
    assert response.status_code == 202, response.get_json()
    url = f"/v1/batches/{response.get_json()['id']}"
    wait_until(
        lambda: client.get(url).get_json()["status"] == "completed", 60, "the batch completing"
    )
    items = client.get(f"{url}/results?limit=100").get_json()
    assert [i["status"] for i in items["items"]] == ["succeeded"] * len(files), items
    return [i["result"] for i in items["items"]]


def _idle(client: FlaskClient) -> bool:
    """Nothing waits, runs or is pending on the test's database: no message queued, none taken
    and unacknowledged (a worker acknowledges a chunk only after it recorded the chunk's
    metrics), no image unfinished (which the sweeper could send again)."""
    page = _page(client)
    inference = ("interactive", "inference")
    return (
        not any(metrics.value(page, "skuai_queue_depth", queue=q) for q in inference)
        and metrics.value(page, "skuai_messages_in_flight") == 0
        and metrics.value(page, "skuai_pending_images") == 0
    )


def _snapshot(client: FlaskClient) -> metrics.Samples:
    """/metrics once the test's database is idle: every finished chunk counted."""
    wait_until(lambda: _idle(client), 30, "the test's worker going idle")
    return _page(client)


def _moved(before: metrics.Samples, after: metrics.Samples, name: str, **labels: str) -> float:
    return metrics.value(after, name, **labels) - metrics.value(before, name, **labels)


def _check_histogram(
    before: metrics.Samples, after: metrics.Samples, answers: list[dict], version: str
) -> float:
    """The histogram moved by exactly the answers' confidences; their mean."""
    confidences = np.array([a["sku"]["confidence"] for a in answers])
    count = _moved(before, after, f"{HISTOGRAM}_count", model_version=version)
    total = _moved(before, after, f"{HISTOGRAM}_sum", model_version=version)
    assert count == len(answers)
    assert total == pytest.approx(confidences.sum(), abs=1e-6)
    for bound in CONFIDENCE_BUCKETS:
        le = repr(float(bound))
        moved = _moved(before, after, f"{HISTOGRAM}_bucket", model_version=version, le=le)
        assert moved == (confidences <= bound).sum(), bound
    return total / count


def _shares(page: metrics.Samples, tenant: str) -> dict[str, float]:
    return {
        dict(labels)["sku"]: value
        for (name, labels), value in page.items()
        if name == "skuai_sku_share" and dict(labels)["tenant"] == tenant
    }


def test_a_shifted_stream_moves_the_drift_metrics(
    own_db: Settings, own_workers: OwnWorkers, tiny_catalog: Path, trained: str
) -> None:
    # A Redis database and a worker of the test's own: the histogram, the decisions and the
    # queues on its /metrics are this test's alone, whatever other tests left running.
    tenant = f"drift-{uuid.uuid4().hex[:8]}"
    iso = isolated_app(own_db, tenant)
    own_workers.start(iso, "drift", trained)
    in_catalog = [(f"{i}.png", p.read_bytes()) for i, p in enumerate(catalog_images(tiny_catalog))]
    shifted = [_blank(i) for i in range(20)]

    # A completed batch's last chunk may still be recording its metrics: each snapshot waits
    # until the worker acknowledged every chunk.
    before = _snapshot(iso.client)
    first = _answers(iso.client, in_catalog[::3])  # 20 photos, every SKU
    middle = _snapshot(iso.client)
    second = _answers(iso.client, shifted)
    after = _snapshot(iso.client)

    means = [
        _check_histogram(before, middle, first, trained),
        _check_histogram(middle, after, second, trained),
    ]
    assert means[0] != means[1]
    for start, end, answers in ((before, middle, first), (middle, after, second)):
        decided = Counter(a["decision"] for a in answers)
        for decision in DECISIONS:
            moved = _moved(start, end, "skuai_decisions_total", decision=decision)
            assert moved == decided[decision], decision

    # The tenant's window (SKUAI_SKU_SHARE_WINDOW = 1000 here) holds both streams.
    def composition(answers: list[dict]) -> dict[str, float]:
        counts = Counter(a["sku"]["label"] for a in answers)
        return {sku: n / len(answers) for sku, n in counts.most_common(own_db.sku_share_top)}

    assert _shares(middle, tenant) == pytest.approx(composition(first))
    assert _shares(after, tenant) == pytest.approx(composition(first + second))
    assert metrics.value(after, "skuai_sku_share_predictions", tenant=tenant) == 40
    [(stuck, _)] = Counter(a["sku"]["label"] for a in second).items()  # one SKU for every blank
    assert _shares(after, tenant)[stuck] > _shares(middle, tenant).get(stuck, 0.0)
    assert _shares(after, tenant)[stuck] >= 0.5


def test_the_sku_share_window_slides_and_bounds_its_labels(own_db: Settings) -> None:
    conn = redis.Redis.from_url(own_db.redis_url)
    shares = SkuShares(conn, window=5)
    shares.record([("shop", "x"), ("shop", "x"), ("shop", "x"), ("other", "y")])
    shares.record([("shop", "z")] * 3 + [("shop", "w")])  # x x x z z z w: the last 5 stay
    assert shares.shares(top=2) == {
        "other": (1, [("y", 1.0)]),
        "shop": (5, [("z", 0.6), ("w", 0.2)]),  # ties by name: w before x
    }
    registry = CollectorRegistry()
    registry.register(SkuShareCollector(conn, top=1))
    page = metrics.samples(generate_latest(registry).decode())
    assert _shares(page, "shop") == {"z": 0.6} and _shares(page, "other") == {"y": 1.0}
    assert metrics.value(page, "skuai_sku_share_predictions", tenant="shop") == 5
    assert 0 < conn.ttl("skuai:metrics:sku_share:shop:window") <= IDLE_SECONDS
    # a smaller window setting trims on the next record; an idle tenant's window expires
    SkuShares(conn, window=2).record([("shop", "x")])
    assert shares.shares(top=5)["shop"] == (2, [("w", 0.5), ("x", 0.5)])
    conn.delete("skuai:metrics:sku_share:other:window", "skuai:metrics:sku_share:other:counts")
    assert "other" not in shares.shares(top=5)
    assert conn.smembers("skuai:metrics:sku_share:tenants") == {b"shop"}


# --- the dashboard and the alert rules, in their tools ------------------------------------

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus; CI does)"
)
# Prometheus' own series, and the ones Grafana fills in before a query is sent.
BUILT_IN = frozenset({"up"})
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$tenant": ".*"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _promtool(*args: str | Path) -> str:
    run = subprocess.run(
        [str(PROMTOOL), *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _exported(api_url: str) -> set[str]:
    """Every series name skuai's /metrics can carry, from its families' names and types."""
    page = http.get(f"{api_url}/metrics", timeout=10).text
    return {
        family.name + suffix
        for family in text_string_to_metric_families(page)
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def _series_names(expr: str) -> set[str]:
    """The series an expression reads (skuai's, and Prometheus' own)."""
    return set(re.findall(r"\b(skuai_[a-z0-9_]+)\b", expr)) | (
        BUILT_IN & set(re.findall(r"\b([a-z_]+)\s*[{[]", expr))
    )


def _dashboard() -> dict:
    return json.loads((GRAFANA / "skuai.json").read_text())


def _panel_queries(dashboard: dict) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for name, value in GRAFANA_VARIABLES.items():
        queries = [q.replace(name, value) for q in queries]
    return queries


@needs_promtool
def test_alert_rules_and_scrape_config_pass_promtool(tmp_path: Path) -> None:
    assert "SUCCESS: 6 rules found" in _promtool("check", "rules", PROMETHEUS / "alerts.yml")
    _promtool("test", "rules", PROMETHEUS / "alerts_test.yml")  # fires each alert on a series
    _promtool("check", "config", "--syntax-only", PROMETHEUS / "prometheus.yml")
    # The full check also loads the rule files and the token file compose writes at start.
    token = tmp_path / "token"
    token.write_text("scrape-token")
    config = (PROMETHEUS / "prometheus.yml").read_text()
    assert config.count("/tmp/skuai-metrics-token") == 1
    (tmp_path / "prometheus.yml").write_text(config.replace("/tmp/skuai-metrics-token", str(token)))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path)
    _promtool("check", "config", tmp_path / "prometheus.yml")


@needs_promtool
@pytest.mark.usefixtures("inference_worker")
def test_dashboard_and_alerts_read_only_metrics_skuai_exports(api_url: str, tmp_path: Path) -> None:
    # No offline Grafana validator could be installed: the JSON is checked for what Grafana
    # needs to load it, and its queries with promtool (as recording rules: PromQL syntax).
    dashboard = _dashboard()
    panels = dashboard["panels"]
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    assert len({p["id"] for p in panels}) == len(panels)
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    [source] = datasource["datasources"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/skuai.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    for panel in [p for p in panels if p["type"] != "row"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(set(refs)) == len(refs), panel["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
    queries = _panel_queries(dashboard)
    recorded = [{"record": f"skuai:dashboard:{i}", "expr": q} for i, q in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": recorded}]}
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    _promtool("check", "rules", tmp_path / "queries.yml")

    exported = _exported(api_url)
    alerts = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alert_exprs = [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    read = set().union(*map(_series_names, queries + alert_exprs))
    assert read - BUILT_IN <= exported, sorted(read - BUILT_IN - exported)
    drift = {"skuai_top_confidence_sum", "skuai_decisions_total", "skuai_sku_share"}
    assert drift <= read  # the drift metrics are on the dashboard and in the alerts
    for queue_metric in ("skuai_queue_depth", "skuai_queue_oldest_age_seconds"):
        assert queue_metric in read
