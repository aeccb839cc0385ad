"""The open-world decision wherever a result goes (issue 18): job and batch results, the
`?decision=` filter with cursor pages and exports, per-decision batch counts (exact under
redelivery and duplicates), results stored before decisions existed, webhooks, metrics and
`skuai submit --out`.

The filter and the counts are driven with known "sku", "model" and "unknown" results written by
the stores' own scripts (what a worker calls) on a Redis database of the test's own; through the
real worker, the session's version answers whatever its calibration says (mostly "sku"), and a
copy calibrated with a huge budget answers "unknown" too."""

from __future__ import annotations

import csv
import io
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from shared import keys
from shared.batch_store import BatchStore
from shared.batches import Batch, new_batch_id
from shared.decisions import DECISIONS
from shared.job_store import ALREADY_FINAL, JobStore
from shared.jobs import FAILED, SUCCEEDED, Job, new_job_id
from shared.settings import Settings
from tests.receiver import Receiver
from tests.support import metrics
from tests.support.batches import batch_results, wait_for_batch
from tests.support.http import TENANT, http
from tests.support.images import catalog_images
from tests.support.isolation import Isolated, OwnWorkers, isolated_app
from tests.support.polling import wait_until
from tests.support.processes import WorkerProcess, run_skuai
from training.registry import Registry
from web.schemas.batches import Batch as BatchSchema
from web.schemas.jobs import Job as JobSchema

MODEL, UNKNOWN, SKU = "model", "unknown", "sku"
FAIL = None  # a job that fails instead


def _result(decision: str | None) -> dict:
    result = {
        "model": {"label": "court-max", "confidence": 0.6},
        "sku": {"label": "court-max--red", "confidence": 0.4},
        "candidates": [{"model": "court-max", "sku": "court-max--red", "confidence": 0.4}],
    }
    return result if decision is None else {**result, "decision": decision}


def _stores(conn: redis.Redis) -> tuple[JobStore, BatchStore]:
    jobs = JobStore(conn, result_ttl=600, image_ttl=600)
    return jobs, BatchStore(conn, jobs)


def _decided_batch(
    conn: redis.Redis, outcomes: list[str | None], images: list[bytes] | None = None
) -> tuple[Batch, list[Job]]:
    """A sealed batch of the test tenant whose jobs finished as a worker finishes them: succeeded
    with the decision of `outcomes`, or failed (FAIL); duplicates of `images` share outcomes."""
    jobs, batches = _stores(conn)
    batch = Batch(id=new_batch_id(), tenant=TENANT)
    batches.open(batch)
    members = []
    for i, data in enumerate(images or [f"image {i}".encode() for i in range(len(outcomes))]):
        job = Job(id=new_job_id(), tenant=TENANT, ref=f"{i}.png")
        batches.add(batch, job, data)
        members.append(job)
    batches.seal(batch.id)
    primaries = [(job, outcome) for job, outcome in zip(members, outcomes, strict=True)]
    primaries = [(job, outcome) for job, outcome in primaries if not job.duplicate_of]
    jobs.claim_many([job.id for job, _ in primaries], "task:0")
    jobs.succeed_many([(job.id, _result(o)) for job, o in primaries if o is not FAIL], "v-test")
    for job in [job for job, outcome in primaries if outcome is FAIL]:
        jobs.finish(job.id, FAILED, error={"code": "invalid_image", "message": "broken"})
    return batch, members


def _legacy_finish(conn: redis.Redis, job: Job) -> None:
    """Finish a job as the store did before decisions existed: its result has no decision, and
    the job is in no decision index."""
    conn.hset(
        keys.job(job.id),
        mapping={"status": SUCCEEDED, "result": json.dumps(_result(None)), "model_version": "v0"},
    )
    conn.hincrby(keys.batch(str(job.batch_id)), "queued", -1)
    conn.hincrby(keys.batch(str(job.batch_id)), SUCCEEDED, 1)


@pytest.fixture()
def iso(own_db: Settings) -> Isolated:
    """The real Flask app on a Redis database of the test's own, with a key of the test tenant."""
    return isolated_app(own_db)


def _pages(client: FlaskClient, batch_id: str, decision: str, limit: int) -> list[dict]:
    """Every page of the filtered results, following `next_cursor`."""
    pages, cursor = [], "0"
    while cursor is not None:
        response = client.get(
            f"/v1/batches/{batch_id}/results",
            query_string={"decision": decision, "limit": limit, "cursor": cursor},
        )
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        cursor = pages[-1]["next_cursor"]
    return pages


def test_counts_per_decision_are_exact_under_redelivery_and_duplicates(iso: Isolated) -> None:
    # images 0 and 1 are the same bytes (1 shares 0's outcome); 5 is added after 2 finished
    images = [b"a", b"a", b"b", b"c", b"d"]
    batch, members = _decided_batch(iso.conn, [MODEL, None, UNKNOWN, SKU, FAIL], images)
    jobs, batches = _stores(iso.conn)
    # a redelivered chunk finds its jobs final: nothing moves twice
    again = jobs.succeed_many([(members[0].id, _result(UNKNOWN))], "v-test")
    assert [finish.code for finish in again] == [ALREADY_FINAL]
    done = batches.get(batch.id, TENANT)
    assert done.status == "completed"
    assert done.counts["succeeded"] == 4 and done.counts["failed"] == 1
    assert done.decisions == {SKU: 1, MODEL: 2, UNKNOWN: 1}
    results = [jobs.get(m.id, TENANT).result for m in members]
    assert [r["decision"] if r else None for r in results] == [MODEL, MODEL, UNKNOWN, SKU, None]
    response = iso.client.get(f"/v1/batches/{batch.id}")
    assert response.get_json()["decisions"] == {SKU: 1, MODEL: 2, UNKNOWN: 1}
    BatchSchema.model_validate(response.get_json())


def test_a_late_duplicate_copies_its_twins_decision(iso: Isolated) -> None:
    jobs, batches = _stores(iso.conn)
    batch = Batch(id=new_batch_id(), tenant=TENANT)
    batches.open(batch)
    first, late = Job(id=new_job_id(), tenant=TENANT), Job(id=new_job_id(), tenant=TENANT)
    batches.add(batch, first, b"same")
    jobs.claim(first.id)
    jobs.succeed_many([(first.id, _result(UNKNOWN))], "v-test")
    batches.add(batch, late, b"same")  # its twin is done: finished at once, as a copy
    batches.seal(batch.id)
    assert jobs.get(late.id, TENANT).result == _result(UNKNOWN)
    assert batches.get(batch.id, TENANT).decisions == {SKU: 0, MODEL: 0, UNKNOWN: 2}
    [page] = _pages(iso.client, batch.id, UNKNOWN, 10)
    assert [i["id"] for i in page["items"]] == [first.id, late.id]


def test_filter_pages_in_upload_order_and_applies_to_exports(iso: Isolated) -> None:
    outcomes = [[SKU, MODEL, UNKNOWN, FAIL, SKU][i % 5] for i in range(23)]
    batch, members = _decided_batch(iso.conn, outcomes)
    wanted = [m.id for m, o in zip(members, outcomes, strict=True) if o in (MODEL, UNKNOWN)]
    # the pages come from the per-decision indexes, scored by upload position
    for decision in DECISIONS:
        index: Any = iso.conn.zrange(keys.batch_decided(batch.id, decision), 0, -1, withscores=True)
        assert [(m.decode(), int(p)) for m, p in index] == [
            (m.id, i)
            for i, (m, o) in enumerate(zip(members, outcomes, strict=True))
            if o == decision
        ]
    pages = _pages(iso.client, batch.id, "model,unknown", limit=3)
    assert all(len(page["items"]) <= 3 for page in pages)
    assert [i["id"] for page in pages for i in page["items"]] == wanted
    assert len(pages) == 4  # 10 jobs: full pages, then the last one says there is no more
    for page in pages:
        for item in page["items"]:
            JobSchema.model_validate(item)
            assert item["result"]["decision"] in (MODEL, UNKNOWN)
    # the order of the values does not matter; one decision alone works the same
    other_order = _pages(iso.client, batch.id, "unknown,model", limit=3)
    assert [i["id"] for page in other_order for i in page["items"]] == wanted
    skus = [i["id"] for page in _pages(iso.client, batch.id, SKU, 100) for i in page["items"]]
    assert skus == [m.id for m, o in zip(members, outcomes, strict=True) if o == SKU]
    everything = _pages(iso.client, batch.id, "sku,model,unknown", 100)[0]["items"]
    assert len(everything) == outcomes.count(SKU) + len(wanted)  # the failed jobs are not
    # exports take the same filter
    as_csv = iso.client.get(
        f"/v1/batches/{batch.id}/results?decision=model,unknown", headers={"Accept": "text/csv"}
    )
    rows = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert [r["job_id"] for r in rows] == wanted
    assert all(r["decision"] in (MODEL, UNKNOWN) for r in rows)
    as_ndjson = iso.client.get(
        f"/v1/batches/{batch.id}/results?decision=unknown",
        headers={"Accept": "application/x-ndjson"},
    )
    lines = [json.loads(line) for line in as_ndjson.get_data(as_text=True).splitlines()]
    assert [j["id"] for j in lines] == [
        m.id for m, o in zip(members, outcomes, strict=True) if o == UNKNOWN
    ]
    # unfiltered, every job is exported, with the decision of those that succeeded
    whole = iso.client.get(f"/v1/batches/{batch.id}/results", headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(whole.get_data(as_text=True))))
    assert [r["decision"] for r in rows] == [o or "" for o in outcomes]


@pytest.mark.parametrize("value", ["maybe", "SKU", "sku,", "sku, model", "sku;model"])
def test_a_bad_filter_is_a_400_naming_the_decisions(iso: Isolated, value: str) -> None:
    batch, _ = _decided_batch(iso.conn, [SKU])
    for accept in ("application/json", "text/csv"):
        response = iso.client.get(
            f"/v1/batches/{batch.id}/results",
            query_string={"decision": value},
            headers={"Accept": accept},
        )
        assert response.status_code == 400, (value, accept)
        error = response.get_json()["error"]
        assert error["code"] == "bad_request"
        assert (
            error["message"].startswith("decision: ") and "sku, model, unknown" in error["message"]
        )


def test_results_stored_before_decisions_read_as_sku(iso: Isolated) -> None:
    # a batch in flight across the upgrade: some results finished by the old code
    outcomes = [MODEL, SKU, MODEL, SKU, UNKNOWN, SKU]
    jobs, batches = _stores(iso.conn)
    batch = Batch(id=new_batch_id(), tenant=TENANT)
    batches.open(batch)
    members = [Job(id=new_job_id(), tenant=TENANT, ref=f"{i}") for i in range(len(outcomes) + 3)]
    for i, job in enumerate(members):
        batches.add(batch, job, f"image {i}".encode())
    batches.seal(batch.id)
    old = members[len(outcomes) :]
    for job in old:
        _legacy_finish(iso.conn, job)
    jobs.claim_many([m.id for m in members[: len(outcomes)]], "task:0")
    jobs.succeed_many(
        [(m.id, _result(o)) for m, o in zip(members, outcomes, strict=False)], "v-test"
    )
    job = iso.client.get(f"/v1/jobs/{old[0].id}").get_json()
    assert job["result"]["decision"] == SKU
    JobSchema.model_validate(job)
    status = iso.client.get(f"/v1/batches/{batch.id}").get_json()
    assert status["decisions"] == {SKU: 6, MODEL: 2, UNKNOWN: 1}
    # the filter finds them too (these batches are read in upload order instead of the index)
    skus = [i["id"] for page in _pages(iso.client, batch.id, SKU, 2) for i in page["items"]]
    assert skus == [m.id for m, o in zip(members, outcomes + [SKU] * 3, strict=True) if o == SKU]
    models = [i["id"] for page in _pages(iso.client, batch.id, MODEL, 1) for i in page["items"]]
    assert models == [members[0].id, members[2].id]


def test_the_document_declares_the_decision_and_the_filter(iso: Isolated) -> None:
    document = iso.client.get("/openapi.json").get_json()
    result = document["components"]["schemas"]["Result"]
    assert "decision" in result["required"]
    assert result["properties"]["decision"]["enum"] == list(DECISIONS)
    assert document["components"]["schemas"]["Batch"]["required"].count("decisions") == 1
    operation = document["paths"]["/v1/batches/{batch_id}/results"]["get"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == "decision"]
    assert parameter["in"] == "query" and parameter["schema"]["pattern"]


# --- through the real API, worker, webhook worker and receiver ---------------------------------


@pytest.mark.usefixtures("inference_worker")
def test_decisions_through_the_worker_webhooks_and_metrics(
    api_url: str,
    tiny_catalog: Path,
    trained: str,
    hook: tuple[Receiver, Callable[..., dict]],
    webhook_workers: Callable[..., WorkerProcess],
) -> None:
    webhook_workers()
    rx, subscribe = hook
    sub = subscribe(["job.succeeded", "batch.completed"])
    before = metrics.samples(http.get(f"{api_url}/metrics", timeout=10).text)
    images = catalog_images(tiny_catalog, 6)
    files = [("images", (f"{uuid.uuid4().hex}.png", p.read_bytes())) for p in images]
    files.append(("images", ("bad.png", b"not an image")))
    batch = http.post(f"{api_url}/v1/batches", files=files, timeout=30).json()
    done = wait_for_batch(api_url, batch["id"])
    BatchSchema.model_validate(done)
    assert sum(done["decisions"].values()) == done["counts"]["succeeded"] == 6
    items = batch_results(api_url, batch["id"], limit=3)
    decided = {i["id"]: i["result"]["decision"] for i in items if i["status"] == "succeeded"}
    assert len(decided) == 6 and set(decided.values()) <= set(DECISIONS)
    for decision in DECISIONS:
        assert done["decisions"][decision] == list(decided.values()).count(decision)
        filtered = http.get(
            f"{api_url}/v1/batches/{batch['id']}/results",
            params={"decision": decision},
            timeout=10,
        ).json()["items"]
        assert [i["id"] for i in filtered] == [j for j, d in decided.items() if d == decision]
    # webhooks: each job's result with its decision, the batch with its counts per decision
    rx.wait_for(7)
    events = [r.verify(sub["secret"]) for r in rx.received]
    succeeded = {e["data"]["id"]: e["data"] for e in events if e["type"] == "job.succeeded"}
    assert {j: d["result"]["decision"] for j, d in succeeded.items()} == decided
    [completed] = [e["data"] for e in events if e["type"] == "batch.completed"]
    assert completed["decisions"] == done["decisions"]
    # metrics: one per result, by decision and version
    after = metrics.samples(http.get(f"{api_url}/metrics", timeout=10).text)
    for decision in DECISIONS:
        grew = metrics.value(
            after, "skuai_decisions_total", decision=decision, model_version=trained
        ) - metrics.value(before, "skuai_decisions_total", decision=decision, model_version=trained)
        assert grew == done["decisions"][decision], decision


@pytest.mark.usefixtures("inference_worker")
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_submit_out_carries_the_decision(
    api_url: str, tiny_catalog: Path, service_env: dict[str, str], tmp_path: Path, suffix: str
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, p in enumerate(catalog_images(tiny_catalog, 3)):
        (folder / f"{i}.png").write_bytes(p.read_bytes() + uuid.uuid4().bytes)
    out = tmp_path / f"results{suffix}"
    run = run_skuai("submit", str(folder), "--api", api_url, "--out", str(out), env=service_env)
    assert run.returncode == 0, run.stderr
    if suffix == ".csv":
        decisions = [row["decision"] for row in csv.DictReader(out.open())]
    else:
        decisions = [json.loads(line)["result"]["decision"] for line in out.open()]
    assert len(decisions) == 3 and set(decisions) <= set(DECISIONS)
    summary = ", ".join(f"{decisions.count(d)} {d}" for d in DECISIONS)
    printed = " ".join((run.stdout + run.stderr).split())
    assert f"3 succeeded, 0 failed; {summary}" in printed, printed


def test_model_and_unknown_decisions_of_a_calibrated_version_through_a_worker(
    own_db: Settings,
    own_workers: OwnWorkers,
    trained: str,
    settings: Settings,
    tiny_catalog: Path,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # The session's version, calibrated with a budget so large that most photos it classifies
    # right lose their "sku" decision: real "unknown" answers from a real worker. The whole
    # budget goes to stage 1 (split 1; stage 2 never flags), whose threshold needs
    # ceil(1 / 0.9) = 2 correctly classified validation photos; the session's version gets 7 to
    # 10 of its 12 right (conftest's TINY_TRAINING, measured over 3 seeds). The threshold sits
    # on the floor(0.9 n)-th lowest score of those n, so that many of them answer "unknown".
    registry = tmp_path / "registry"
    shutil.copytree(settings.registry_dir / trained, registry / trained)
    calibrate = ["models", "calibrate", trained, "--registry", str(registry), "--budget", "0.9"]
    calibrate += ["--split", "1"]
    run = run_skuai(*calibrate, "--data", str(tiny_catalog), "--json", env=service_env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    fit = summary["calibration"]
    assert fit["validation_correct"] >= fit["photos_needed"]["unknown"] == 2, fit
    assert summary["thresholds"]["unknown"] is not None, run.stdout
    Registry(registry).activate(trained)
    iso = isolated_app(replace(own_db, registry=registry))
    own_workers.start(iso, "calibrated", trained)
    # the validation photos the threshold was fitted on: at least floor(0.9 x 2) fall below it
    split = json.loads((registry / trained / "split.json").read_text())["files"]
    images = [tiny_catalog / row["path"] for row in split if row["split"] == "val"]
    files = [(io.BytesIO(p.read_bytes()), f"{i}.png") for i, p in enumerate(images)]
    response = iso.client.post("/v1/batches", data={"images": files})
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]
    wait_until(
        lambda: iso.client.get(f"/v1/batches/{batch_id}").get_json()["status"] == "completed",
        120,
        "the batch completing",
    )
    done = iso.client.get(f"/v1/batches/{batch_id}").get_json()
    assert done["counts"]["succeeded"] == len(images)
    items = _pages(iso.client, batch_id, "sku,model,unknown", 100)[0]["items"]
    decided = [item["result"]["decision"] for item in items]
    assert done["decisions"] == {d: decided.count(d) for d in DECISIONS}
    assert done["decisions"][MODEL] + done["decisions"][UNKNOWN] > 0, done["decisions"]
    pages = _pages(iso.client, batch_id, "model,unknown", limit=2)
    assert [i["id"] for page in pages for i in page["items"]] == [
        item["id"] for item in items if item["result"]["decision"] != SKU
    ]
    page = metrics.samples(iso.client.get("/metrics").get_data(as_text=True))
    for decision in DECISIONS:
        counted = metrics.value(
            page, "skuai_decisions_total", decision=decision, model_version=trained
        )
        assert counted == done["decisions"][decision], decision
