"""The task retry policy, driven by `SkuaiError.retryable`: with a real worker, a chunk waiting
for a model to be activated is retried until one is, and a chunk pinned to a version that no
longer exists fails its jobs at once instead of retrying forever."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace
from pathlib import Path

from flask.testing import FlaskClient

from shared import keys
from shared.errors import ModelNotFound, SkuaiError, VersionNotFound
from shared.settings import Settings
from tests.support.images import distinct_images
from tests.support.isolation import OwnWorkers, isolated_app
from tests.support.polling import wait_until
from training.registry import Registry
from worker.retry_policy import RetryPolicy


def test_policy_backs_off_then_gives_up_and_never_retries_permanent_errors() -> None:
    policy = RetryPolicy(give_up_after=60)
    no_model = ModelNotFound("no active model")
    assert [policy.delay(no_model, n) for n in range(9)] == [1, 2, 4, 8, 15, 15, 15, None, None]
    assert policy.delay(VersionNotFound("no model version 'v9'"), 0) is None
    assert policy.delay(SkuaiError("a bug"), 0) is None


def _submit(client: FlaskClient, catalog: Path, salt: int) -> str:
    """A batch of two different images (one chunk)."""
    images = [(io.BytesIO(data), name) for name, data in distinct_images(catalog, 2, salt)]
    response = client.post(
        "/v1/batches", data={"images": images}, content_type="multipart/form-data"
    )
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def test_worker_waits_out_a_retryable_error_and_fails_a_permanent_one_at_once(
    own_db: Settings, own_workers: OwnWorkers, trained: str, tiny_catalog: Path, tmp_path: Path
) -> None:
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    iso = isolated_app(replace(own_db, registry=registry_dir))
    client, conn = iso.client, iso.conn
    worker = own_workers.start(iso, "retrying", None)  # no model active yet
    log = worker.log
    waiting = _submit(client, tiny_catalog, salt=1)
    pinned = _submit(client, tiny_catalog, salt=2)
    # Pinned as its first chunk would have, to a version deleted since.
    conn.hset(keys.batch(pinned), "model_version", "v99")
    wait_until(lambda: log.read_text().count("no active model") >= 4, 30, "two retries each", log)
    for batch_id in (waiting, pinned):
        assert client.get(f"/v1/batches/{batch_id}").json["counts"]["queued"] == 2
    shutil.copytree(own_db.registry_dir / trained, registry_dir / trained)
    Registry(registry_dir).activate(trained)
    wait_until(
        lambda: all(
            client.get(f"/v1/batches/{b}").json["status"] == "completed" for b in (waiting, pinned)
        ),
        60,
        "both batches completing once a model is active",
        log,
    )
    worker.stop()  # its log complete
    assert client.get(f"/v1/batches/{waiting}").json["counts"]["succeeded"] == 2
    errors = [job["error"] for job in client.get(f"/v1/batches/{pinned}/results").json["items"]]
    assert errors == [VersionNotFound(f"no model version 'v99' in {registry_dir}").to_dict()] * 2
    assert "'v99'" not in "".join(line for line in log.open() if "retrying in" in line)
