"""BatchStore and JobStore semantics against a real Redis: exact counts, completion exactly once,
idempotent redelivery, duplicates, cancel mid-batch."""

from __future__ import annotations

import uuid

import pytest
import redis

from shared.batch_store import DUPLICATE, FINISHED, TO_CLASSIFY, BatchStore
from shared.batches import Batch
from shared.errors import Conflict, NotFound
from shared.job_store import FINISHED as JOB_FINISHED
from shared.job_store import FINISHED_BATCH, JobStore
from shared.jobs import CANCELED, FAILED, SUCCEEDED, Job

RESULT = {"decision": "sku", "model": {"label": "m", "confidence": 1.0}}


@pytest.fixture()
def stores(conn: redis.Redis) -> tuple[JobStore, BatchStore]:
    jobs = JobStore(conn, result_ttl=600, image_ttl=600)
    return jobs, BatchStore(conn, jobs)


def _batch(store: BatchStore, images: list[bytes]) -> tuple[Batch, list[Job]]:
    batch = Batch(id=f"bat_{uuid.uuid4().hex}", tenant="t")
    store.open(batch)
    jobs = []
    for i, data in enumerate(images):
        job = Job(id=f"job_{uuid.uuid4().hex}", tenant="t", ref=str(i))
        store.add(batch, job, data)
        jobs.append(job)
    return batch, jobs


def test_counts_move_with_every_status_change(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, batches = stores
    batch, members = _batch(batches, [b"a", b"b"])
    counts = lambda: batches.get(batch.id, "t").counts  # noqa: E731
    assert counts()["queued"] == 2
    assert jobs.claim(members[0].id)
    assert counts()["queued"] == 1 and counts()["running"] == 1
    assert batches.get(batch.id, "t").status == "running"
    assert (
        jobs.finish(members[0].id, SUCCEEDED, result=RESULT, model_version="v1").code
        == JOB_FINISHED
    )
    assert not batches.seal(batch.id)  # one still queued
    assert jobs.claim(members[1].id)
    assert (
        jobs.finish(members[1].id, FAILED, error={"code": "x", "message": "y"}).code
        == FINISHED_BATCH
    )
    final = batches.get(batch.id, "t")
    assert final.status == "completed" and final.finished_at
    assert final.counts == {"queued": 0, "running": 0, "succeeded": 1, "failed": 1, "canceled": 0}


def test_an_unsealed_batch_does_not_complete(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, batches = stores
    batch, [job] = _batch(batches, [b"a"])
    jobs.claim(job.id)
    assert jobs.finish(job.id, SUCCEEDED, result=RESULT).code == JOB_FINISHED  # upload still open
    assert batches.get(batch.id, "t").status == "running"
    assert batches.seal(batch.id) is True
    assert batches.get(batch.id, "t").status == "completed"


def test_redelivered_chunk_writes_nothing_twice(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, batches = stores
    batch, [job] = _batch(batches, [b"a"])
    batches.seal(batch.id)
    assert jobs.claim(job.id) == 1 and jobs.claim(job.id) == 2  # a redelivered copy runs again
    assert jobs.finish(job.id, SUCCEEDED, result=RESULT).code == FINISHED_BATCH
    assert jobs.finish(job.id, FAILED, error={"code": "late", "message": "second copy"}).code == 0
    assert not jobs.claim(job.id)
    stored = jobs.get(job.id, "t")
    assert stored.status == SUCCEEDED and stored.error is None
    assert batches.get(batch.id, "t").counts["succeeded"] == 1


def test_duplicates_share_the_outcome_even_when_added_late(
    stores: tuple[JobStore, BatchStore],
) -> None:
    jobs, batches = stores
    batch = Batch(id=f"bat_{uuid.uuid4().hex}", tenant="t")
    batches.open(batch)
    first, early, late = (Job(id=f"job_{uuid.uuid4().hex}", tenant="t") for _ in range(3))
    assert batches.add(batch, first, b"same") == TO_CLASSIFY
    assert batches.add(batch, early, b"same") == DUPLICATE  # attached: not classified again
    jobs.claim(first.id)
    jobs.finish(first.id, SUCCEEDED, result=RESULT, model_version="v1")
    assert batches.add(batch, late, b"same") == FINISHED  # primary already done: copied at once
    assert batches.seal(batch.id) is True
    for job in (early, late):
        copy = jobs.get(job.id, "t")
        assert copy.status == SUCCEEDED and copy.result == RESULT and copy.model_version == "v1"
    assert batches.get(batch.id, "t").counts["succeeded"] == 3


def test_cancel_mid_batch_keeps_finished_results(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, batches = stores
    batch, members = _batch(batches, [b"a", b"b", b"c", b"d"])
    batches.seal(batch.id)
    jobs.claim(members[0].id)
    jobs.finish(members[0].id, SUCCEEDED, result=RESULT)
    jobs.claim(members[1].id)  # running while the cancel arrives
    after, completed = batches.cancel(batch.id, "t")
    assert not completed and after.counts["canceled"] == 2 and after.status == "running"
    assert not jobs.claim(members[2].id)  # a canceled job is never run
    assert jobs.finish(members[1].id, SUCCEEDED, result=RESULT).code == FINISHED_BATCH
    final = batches.get(batch.id, "t")
    assert final.status == CANCELED
    assert final.counts == {"queued": 0, "running": 0, "succeeded": 2, "failed": 0, "canceled": 2}
    assert jobs.get(members[0].id, "t").result == RESULT


def test_tenants_do_not_see_each_other(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, batches = stores
    batch, [job] = _batch(batches, [b"a"])
    with pytest.raises(NotFound):
        batches.get(batch.id, "other")
    with pytest.raises(NotFound):
        jobs.get(job.id, "other")


def test_single_job_cancel(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, _ = stores
    job = Job(id=f"job_{uuid.uuid4().hex}", tenant="t")
    jobs.create(job, b"img")
    assert jobs.cancel(job.id, "t").status == CANCELED
    with pytest.raises(Conflict):
        jobs.cancel(job.id, "t")


def test_only_runs_of_an_image_alone_count_against_it(stores: tuple[JobStore, BatchStore]) -> None:
    jobs, batches = stores
    _, members = _batch(batches, [b"a", b"b"])
    ids = [job.id for job in members]
    jobs.claim_many(ids, "chunk:0")
    again = jobs.claim_many(ids, "chunk:0")  # its worker died: the same message comes back
    assert all(claim.interrupted and claim.crashes == 0 for claim in again.values())
    jobs.hand_over(ids)  # ...and splits into chunks of one
    [alone] = jobs.claim_many(ids[:1], "single:0").values()
    assert not alone.interrupted and alone.crashes == 0
    [retried] = jobs.claim_many(ids[:1], "single:1").values()  # its own retry after a Redis error
    assert not retried.interrupted and retried.crashes == 0
    [crashed] = jobs.claim_many(ids[:1], "single:1").values()  # it died running the image alone
    assert crashed.interrupted and crashed.crashes == 1 and crashed.count == 5
