"""Champion and challenger through the HTTP API and real workers: a challenger in the shadow is
scored on live jobs without changing the champion's answers or their latency, its agreement and
disagreements by SKU are shown by GET /v1/models and `skuai models compare`, an activation is
refused on worse accuracy on corrected jobs (and allowed with --force), and the retraining
trigger fires at its threshold and leaves the new version in the shadow, not active.

The challenger is the session's tiny cascade with each model's SKU labels reversed: the same
model answers, every SKU answer the other colourway, so its score is known in advance."""

from __future__ import annotations

import io
import json
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest

from shared.feedback_store import FeedbackStore
from shared.settings import Settings
from tests.conftest import TINY
from tests.support.images import distinct_images
from tests.support.isolation import Isolated, OwnWorkers, isolated_app
from tests.support.polling import wait_until
from tests.support.processes import run_skuai
from tests.support.redis_databases import RedisDatabases
from training.registry import Registry

PHOTOS = 16
CORRECTED = 6  # more than shared.shadow_store.MIN_CORRECTED
RETRAIN_AT = 14  # corrections (all tests here) that trigger the retrain in the last test


@dataclass
class Stack:
    """An API and a worker on a Redis database and a registry of this module's own."""

    iso: Isolated
    registry: Path
    env: dict[str, str]


def _registry(root: Path, settings: Settings, trained: str) -> Path:
    """v1: the session's cascade (active); v2: the same with each model's SKUs reversed."""
    registry = root / "registry"
    for version in ("v1", "v2"):
        shutil.copytree(settings.registry_dir / trained, registry / version)
    labels = json.loads((registry / "v2" / "labels.json").read_text())
    labels["skus"] = {model: skus[::-1] for model, skus in labels["skus"].items()}
    (registry / "v2" / "labels.json").write_text(json.dumps(labels))
    Registry(registry).activate("v1")
    return registry


@pytest.fixture(scope="module")
def stack(
    trained: str,
    settings: Settings,
    redis_databases: RedisDatabases,
    service_env: dict[str, str],
    tiny_catalog: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One worker for the module (a start costs seconds): its retrain trigger at RETRAIN_AT
    corrections, on the tiny catalog v1 was trained on."""
    root = tmp_path_factory.mktemp("shadow")
    registry = _registry(root, settings, trained)
    retrain = {
        "SKUAI_RETRAIN_CORRECTIONS": str(RETRAIN_AT),
        "SKUAI_RETRAIN_DATA": str(tiny_catalog),
    }
    with redis_databases.lend() as url:
        # chunks of 4: the worker goes from chunk to chunk, where the shadow must not cut in
        iso = isolated_app(replace(settings, redis_url=url, registry=registry, chunk_size=4))
        workers = OwnWorkers(service_env, root)
        try:
            workers.start(iso, "shadow", "v1", **retrain)
            yield Stack(iso, registry, iso.worker_env(service_env))
        finally:
            workers.stop_all()


def _batch(iso: Isolated, photos: list[bytes]) -> dict[str, dict]:
    """Upload a batch, wait for it, and return its jobs by ref."""
    files = [(io.BytesIO(data), f"{i}.png") for i, data in enumerate(photos)]
    response = iso.client.post(
        "/v1/batches", data={"images": files}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]

    def done() -> bool:
        return iso.client.get(f"/v1/batches/{batch_id}").get_json()["status"] == "completed"

    wait_until(done, 60, "the batch")
    page = iso.client.get(f"/v1/batches/{batch_id}/results", query_string={"limit": 100})
    return {job["ref"]: job for job in page.get_json()["items"]}


def _latency(jobs: dict[str, dict]) -> float:
    """The median seconds from upload to stored answer."""
    return statistics.median(
        (
            datetime.fromisoformat(j["finished_at"]) - datetime.fromisoformat(j["created_at"])
        ).total_seconds()
        for j in jobs.values()
    )


def _shadow(iso: Isolated) -> dict:
    return dict(iso.client.get("/v1/models").get_json()["shadow"] or {})


def test_a_challenger_in_the_shadow_changes_no_answer_and_is_scored(
    stack: Stack, tiny_catalog: Path
) -> None:
    iso = stack.iso
    photos = [data for _, data in distinct_images(tiny_catalog, PHOTOS, 71)]
    alone = _batch(iso, photos)
    started = run_skuai("models", "shadow", "v2", "--sample", "1", env=stack.env)
    assert started.returncode == 0, started.stderr
    assert _shadow(iso)["version"] == "v2" and _shadow(iso)["sample"] == 1.0
    shadowed = _batch(iso, [data + uuid.uuid4().bytes for data in photos])

    # the champion's answers, as clients see them, are the same with and without the shadow
    assert {ref: job["result"] for ref, job in shadowed.items()} == {
        ref: job["result"] for ref, job in alone.items()
    }
    assert {job["model_version"] for job in shadowed.values()} == {"v1"}
    # ...and as fast, within noise
    print(f"median latency {_latency(alone):.3f} s alone, {_latency(shadowed):.3f} s shadowed")
    assert _latency(shadowed) <= 1.5 * _latency(alone) + 0.2, (_latency(alone), _latency(shadowed))

    # every shadowed job scored (once the worker was idle): same models, the other SKU
    wait_until(lambda: _shadow(iso)["comparison"]["scored"] == PHOTOS, 60, "the shadow scoring")
    comparison = _shadow(iso)["comparison"]
    assert comparison["agreement"]["model"] == 1.0
    assert comparison["agreement"]["sku"] == 0.0
    assert sum(row["count"] for row in comparison["disagreements"]) == PHOTOS
    answered = {job["result"]["sku"]["label"] for job in shadowed.values()}
    assert {row["champion_sku"] for row in comparison["disagreements"]} == answered
    compared = run_skuai("models", "compare", "v1", "v2", "--json", env=stack.env)
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout) == comparison
    text = run_skuai("models", "compare", "v1", "v2", env=stack.env).stdout
    assert f"{PHOTOS} live jobs scored" in text and "same sku       0.0%" in text


def test_activation_is_refused_on_worse_accuracy_on_corrected_jobs(stack: Stack) -> None:
    iso = stack.iso
    # too few corrected jobs to judge: allowed, and said so
    few = run_skuai("models", "activate", "v2", env=stack.env)
    assert few.returncode == 0 and "not enough corrected jobs" in few.stdout, few.stdout
    assert run_skuai("models", "activate", "v1", env=stack.env).returncode == 0

    # partners confirm the champion's SKU on some scored jobs: v2 (the other SKU) is wrong
    answered = sorted(iso.conn.scan_iter("skuai:shadow:job:*"))  # jobs the shadow answered
    ids = [key.decode().rpartition(":")[2] for key in answered][:CORRECTED]
    scored = [iso.client.get(f"/v1/jobs/{job_id}").get_json() for job_id in ids]
    assert len(scored) == CORRECTED
    for job in scored:
        body = {"sku": job["result"]["sku"]["label"]}
        response = iso.client.post(f"/v1/jobs/{job['id']}/feedback", json=body)
        assert response.status_code == 200, response.get_json()
    corrected = _shadow(iso)["comparison"]["corrected"]
    assert corrected == {
        "jobs": CORRECTED,
        "correct": {"v1": CORRECTED, "v2": 0},
        "accuracy": {"v1": 1.0, "v2": 0.0},
    }

    refused = run_skuai("models", "activate", "v2", env=stack.env)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert f"right on 0/{CORRECTED}" in refused.stderr and "--force" in refused.stderr
    assert Registry(stack.registry).active() == "v1"
    forced = run_skuai("models", "activate", "v2", "--force", env=stack.env)
    assert forced.returncode == 0 and Registry(stack.registry).active() == "v2", forced.stderr
    back = run_skuai("models", "activate", "v1", env=stack.env)  # the better one: allowed
    assert back.returncode == 0 and Registry(stack.registry).active() == "v1", back.stderr


@pytest.fixture(scope="module")
def new_model(tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model the tiny catalog lacks (another draw with one model more): its photos."""
    from training.synth import synthesize

    more = tmp_path_factory.mktemp("more") / "data"
    synthesize(more, **{**TINY, "models": TINY["models"] + 1})
    known = {p.name for p in tiny_catalog.iterdir()}
    return next(p for p in sorted(more.iterdir()) if p.is_dir() and p.name not in known)


def test_the_retrain_trigger_puts_a_new_version_in_the_shadow(
    stack: Stack, new_model: Path
) -> None:
    from worker.retrain import corrections_total

    iso = stack.iso
    needed = RETRAIN_AT - corrections_total(FeedbackStore(iso.conn))  # the earlier tests' count
    assert 2 <= needed <= 20, needed
    per_sku = -(-needed // 2)  # from both SKUs of the new model
    photos = [p for sku in sorted(new_model.iterdir()) for p in sorted(sku.glob("*.png"))[:per_sku]]
    photos = photos[:needed]
    # the export takes a tenant's photos only where it opted in to keep corrected ones
    opt_in = iso.client.put("/v1/review/settings", json={"keep": ["corrected"]})
    assert opt_in.status_code == 200, opt_in.get_json()
    jobs = _batch(iso, [p.read_bytes() for p in photos])

    def correct(index: int) -> None:
        photo = photos[index]
        body = {"not_in_catalog": True, "label": photo.parent.name, "model": new_model.name}
        response = iso.client.post(f"/v1/jobs/{jobs[f'{index}.png']['id']}/feedback", json=body)
        assert response.status_code == 200, response.get_json()

    for index in range(needed - 1):
        correct(index)
    time.sleep(6)  # more than a sweep interval (worker/runtime.py): one short, nothing starts
    assert iso.client.get("/v1/models").get_json()["retrain"] is None
    began = time.monotonic()
    correct(needed - 1)

    def finished() -> bool:
        status = iso.client.get("/v1/models").get_json()["retrain"]
        return status is not None and status["state"] in ("succeeded", "failed")

    wait_until(finished, 180, "the retrain")
    listing = iso.client.get("/v1/models").get_json()
    assert listing["retrain"]["state"] == "succeeded", listing["retrain"]
    print(f"retrain took {time.monotonic() - began:.1f} s")
    version = listing["retrain"]["version"]
    assert listing["shadow"]["version"] == version and listing["active"] == "v1"
    (grown,) = [v for v in listing["versions"] if v["version"] == version]
    assert grown["lineage"]["parent"] == "v1"
    assert grown["lineage"]["added_models"] == [new_model.name]
    assert Registry(stack.registry).active() == "v1"
    shown = run_skuai("models", "list", env=stack.env).stdout
    assert f"shadow: {version}" in shown and f"retrain: succeeded {version}" in shown, shown
