"""Corrections through the HTTP API and real workers: a job corrected (idempotent, tenant-scoped,
the last one standing, its history kept), the `job.corrected` webhook on a real receiver, the
Prometheus counter, bad corrections refused with one clear error, and a batch corrected by ref
as JSON and as CSV with per-row errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests

from shared.feedback_store import SKU, Correction, FeedbackStore
from shared.settings import Settings
from tests.receiver import Receiver
from tests.support import metrics
from tests.support.batches import batch_results, wait_for_batch
from tests.support.http import TENANT, http, tenant_session
from tests.support.images import distinct_images
from tests.support.processes import WorkerProcess

pytestmark = pytest.mark.usefixtures("inference_worker")


def catalog(tiny_catalog: Path) -> dict[str, list[str]]:
    """The tiny catalog's models and the SKUs of each (what the session's version learned)."""
    return {
        model.name: sorted(s.name for s in model.iterdir() if s.is_dir())
        for model in sorted(tiny_catalog.iterdir())
        if model.is_dir()
    }


@pytest.fixture(scope="module")
def jobs(api_url: str, tiny_catalog: Path) -> dict[str, dict]:
    """A finished batch of three images: its jobs by ref."""
    files = [("images", (n, d, "image/png")) for n, d in distinct_images(tiny_catalog, 3, 201)]
    created = http.post(f"{api_url}/v1/batches", files=files, timeout=30)
    assert created.status_code == 202, created.text
    wait_for_batch(api_url, created.json()["id"])
    found = {job["ref"]: job for job in batch_results(api_url, created.json()["id"])}
    assert all(job["status"] == "succeeded" for job in found.values()), found
    return found


@pytest.fixture(scope="module")
def failed(api_url: str) -> dict:
    """A finished batch whose one image could not be fetched: its job failed."""
    body = {"images": [{"url": "http://127.0.0.1:9/gone.png", "ref": "gone"}]}
    created = http.post(f"{api_url}/v1/batches", json=body, timeout=10)
    assert created.status_code == 202, created.text
    batch = wait_for_batch(api_url, created.json()["id"])
    (job,) = batch_results(api_url, batch["id"])
    assert job["status"] == "failed", job
    return job


def _predicted(result: dict) -> dict:
    """What web/corrections.py snapshots of a job's answer."""
    return {
        "decision": result.get("decision"),
        "model": result["model"]["label"],
        "sku": result["sku"]["label"],
        "confidence": result["sku"]["confidence"],
    }


def _correct(api_url: str, job_id: str, body: object, **kwargs: object) -> requests.Response:
    return http.post(f"{api_url}/v1/jobs/{job_id}/feedback", json=body, timeout=10, **kwargs)


def test_a_correction_round_trip(
    api_url: str,
    jobs: dict[str, dict],
    tiny_catalog: Path,
    settings: Settings,
    hook: tuple[Receiver, Callable[..., dict]],
    webhook_workers: Callable[..., WorkerProcess],
) -> None:
    rx, subscribe = hook
    sub = subscribe(["job.corrected"])
    webhook_workers()
    before = metrics.samples(http.get(f"{api_url}/metrics", timeout=10).text)
    job = jobs["0.png"]
    model, skus = next(iter(catalog(tiny_catalog).items()))
    # As if the API stored the correction and died before announcing it: the client's retry
    # (answered as a repeat) sends the event and counts the metric, once.
    stored = Correction(
        kind=SKU,
        sku=skus[-1],
        model=model,
        note="seen on the shelf",
        batch_id=job["batch_id"],
        ref=job["ref"],
        model_version=job["model_version"],
        predicted=_predicted(job["result"]),
    )
    assert (
        FeedbackStore(redis.Redis.from_url(settings.redis_url))
        .record(TENANT, job["id"], stored)
        .created
    )

    first = _correct(api_url, job["id"], {"sku": skus[-1], "note": "seen on the shelf"})
    assert first.status_code == 200, first.text
    standing = first.json()["correction"]
    assert standing["kind"] == "sku" and standing["sku"] == skus[-1] and standing["model"] == model
    assert standing["predicted"]["sku"] == job["result"]["sku"]["label"]
    again = _correct(api_url, job["id"], {"sku": skus[-1], "note": "seen on the shelf"})
    assert again.status_code == 200 and again.json() == first.json()  # no second entry

    new = {"not_in_catalog": True, "label": "neon-limited"}
    last = _correct(api_url, job["id"], new).json()
    assert [c["seq"] for c in last["history"]] == [1, 2]
    assert last["correction"]["label"] == "neon-limited" and last["correction"]["not_in_catalog"]
    # A new label goes with the predicted model when the correction names none.
    assert last["correction"]["model"] == job["result"]["model"]["label"]
    shown = http.get(f"{api_url}/v1/jobs/{job['id']}/feedback", timeout=10)
    assert shown.json() == last

    other = tenant_session(settings, "feedback-other")
    assert (
        other.post(f"{api_url}/v1/jobs/{job['id']}/feedback", json=new, timeout=10).status_code
        == 404
    )
    assert other.get(f"{api_url}/v1/jobs/{job['id']}/feedback", timeout=10).status_code == 404

    events = [r.verify(sub["secret"]) for r in rx.wait_for(2, timeout=30)]
    assert sorted(e["data"]["correction"]["seq"] for e in events) == [1, 2]  # one each
    assert all(e["type"] == "job.corrected" and e["data"]["id"] == job["id"] for e in events)
    assert all(e["data"]["result"] == job["result"] for e in events)
    after = metrics.samples(http.get(f"{api_url}/metrics", timeout=10).text)
    for kind in ("sku", "not_in_catalog"):
        grown = metrics.value(after, "skuai_corrections_total", kind=kind) - metrics.value(
            before, "skuai_corrections_total", kind=kind
        )
        assert grown == 1, kind
    assert len(rx.of_type("job.corrected")) == 2  # the repeats sent nothing new


def test_bad_corrections_get_one_clear_error(
    api_url: str, jobs: dict[str, dict], failed: dict, tiny_catalog: Path
) -> None:
    labels = catalog(tiny_catalog)
    (model_a, skus_a), (model_b, _) = list(labels.items())[:2]
    job_id = jobs["1.png"]["id"]
    cases: list[tuple[str, object, int, str]] = [
        (job_id, {}, 400, "send 'sku', 'model'"),
        (job_id, {"sku": skus_a[0], "label": "x"}, 400, "not_in_catalog"),
        (job_id, {"not_in_catalog": True}, 400, "needs 'label'"),
        (job_id, {"sku": "../../etc"}, 400, "sku"),
        (job_id, {"sku": skus_a[0], "colour": "red"}, 400, "colour"),
        (job_id, ["sku"], 400, "JSON object"),
        (job_id, {"sku": "no-such-sku"}, 422, "not_in_catalog"),
        (job_id, {"model": "no-such-model"}, 422, "not in the catalog"),
        (job_id, {"sku": skus_a[0], "model": model_b}, 422, f"belongs to model {model_a!r}"),
        (job_id, {"not_in_catalog": True, "label": skus_a[0]}, 422, "is a SKU"),
        (failed["id"], {"sku": skus_a[0]}, 409, "failed"),
        ("job_missing", {"sku": skus_a[0]}, 404, "no job"),
    ]
    for target, body, status, fragment in cases:
        answer = _correct(api_url, target, body)
        assert answer.status_code == status, (body, answer.text)
        assert fragment in answer.json()["error"]["message"], (body, answer.text)
    assert http.get(f"{api_url}/v1/jobs/{job_id}/feedback", timeout=10).json()["history"] == []


def test_a_batch_corrected_by_ref_as_json_and_csv(
    api_url: str, jobs: dict[str, dict], failed: dict, tiny_catalog: Path, settings: Settings
) -> None:
    (_, skus), (other_model, other_skus) = list(catalog(tiny_catalog).items())[:2]
    batch_id = jobs["1.png"]["batch_id"]
    url = f"{api_url}/v1/batches/{batch_id}/feedback"
    rows = [
        {"ref": "1.png", "sku": skus[0]},
        {"ref": "nope.png", "sku": skus[0]},
        {"ref": "2.png", "sku": "bogus"},
        {"ref": "2.png", "label": "x"},
    ]
    answer = http.post(url, json={"items": rows}, timeout=10).json()
    assert (answer["recorded"], answer["unchanged"], answer["failed"]) == (1, 0, 3), answer
    codes = [item.get("error", {}).get("code") for item in answer["items"]]
    assert codes == [None, "not_found", "invalid_label", "bad_request"], answer
    assert answer["items"][0]["job_id"] == jobs["1.png"]["id"]
    again = http.post(url, json={"items": rows[:1]}, timeout=10).json()
    assert again["unchanged"] == 1 and again["items"][0]["outcome"] == "unchanged"

    csv_body = (
        "ref,sku,model,not_in_catalog,label,note\n"
        f"2.png,,{other_model},true,new-colourway,from a spreadsheet\n"
        f"1.png,{other_skus[0]},,,,\n"
        "nope.png,x,,,,\n"
    )
    sent = http.post(url, data=csv_body, headers={"Content-Type": "text/csv"}, timeout=10)
    assert sent.status_code == 200, sent.text
    assert [i["outcome"] for i in sent.json()["items"]] == ["recorded", "recorded", "error"]
    two = http.get(f"{api_url}/v1/jobs/{jobs['2.png']['id']}/feedback", timeout=10).json()
    assert two["correction"]["model"] == other_model and two["correction"]["sku"] == "new-colourway"
    one = http.get(f"{api_url}/v1/jobs/{jobs['1.png']['id']}/feedback", timeout=10).json()
    assert [c["sku"] for c in one["history"]] == [skus[0], other_skus[0]]

    refused = http.post(url, data="sku\nx\n", headers={"Content-Type": "text/csv"}, timeout=10)
    assert refused.status_code == 400 and "header" in refused.json()["error"]["message"]
    plain = http.post(url, data="ref,sku\n", headers={"Content-Type": "text/plain"}, timeout=10)
    assert plain.status_code == 415
    gone = f"{api_url}/v1/batches/{failed['batch_id']}/feedback"
    row = http.post(gone, json={"items": [{"ref": "gone", "sku": skus[0]}]}, timeout=10).json()
    assert row["items"][0]["error"]["code"] == "conflict"
    other = tenant_session(settings, "feedback-other")
    assert other.post(url, json={"items": rows[:1]}, timeout=10).status_code == 404
