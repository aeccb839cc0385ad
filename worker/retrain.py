"""Retraining on a trigger: once SKUAI_RETRAIN_CORRECTIONS new corrections (all tenants) have
come in since the last retrain, an inference worker's sweep thread (worker/runtime.py, every few
seconds; this check is a few Redis reads) starts one retrain, cluster-wide under a Redis lock:

1. a fresh folder under `$SKUAI_HOME/retrain/<time>/data`: SKUAI_RETRAIN_DATA's files hard-linked
   (copied where the two folders are on different filesystems), so the base dataset is never
   written to;
2. every standing correction exported into it (training/feedback_export.py: near-duplicates of
   the base photos left out, new labels as new SKU folders);
3. `skuai train DATA --from ACTIVE --no-activate` in a child process (a crash or its memory never
   takes the worker down) when the corrections add SKUs or models; with the same catalog
   `--from` has nothing to add, so the version is trained in full with the active version's
   config (`--config ACTIVE/config.json --no-activate`);
4. the new version put in the shadow (shared/shadow_store.py), never activated.

Its state (running, succeeded with the version, failed with the reason) is in Redis, shown by
GET /v1/models and `skuai models list`. A failure waits RETRY_AFTER before the next try, never
a tight loop; the corrections that triggered it still count."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import keys
from shared.errors import RetrainFailed
from shared.feedback_store import FeedbackStore
from shared.jobs import utc_now
from shared.shadow_store import DEFAULT_SAMPLE, ShadowStore

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger(__name__)
LOCK = f"{keys.NAMESPACE}:retrain:lock"
LAST_COUNT = f"{keys.NAMESPACE}:retrain:corrections"  # corrections counted at the last retrain
BACKOFF = f"{keys.NAMESPACE}:retrain:backoff"
LOCK_SECONDS = 120  # renewed while the training runs; a dead worker frees it this soon
RETRY_AFTER = 3600  # seconds after a failed retrain before the next try
ERROR_TAIL = 2000  # characters of the child's output kept as the failure's reason

_running: dict[int, threading.Thread] = {}  # per process id


def corrections_total(feedback: FeedbackStore) -> int:
    """Corrections recorded so far, all tenants together."""
    return sum(feedback.count(tenant) for tenant in feedback.tenants())


def maybe_start(rt: Runtime) -> bool:
    """Start a retrain on a thread of this process if one is due and nobody runs one."""
    threshold, base = rt.settings.retrain_corrections, rt.settings.retrain_data
    thread = _running.get(os.getpid())
    if not threshold or base is None or (thread is not None and thread.is_alive()):
        return False
    total = corrections_total(FeedbackStore(rt.conn))
    if total - int(rt.conn.get(LAST_COUNT) or 0) < threshold or rt.conn.exists(BACKOFF):
        return False
    token = uuid.uuid4().hex
    if not rt.conn.set(LOCK, token, nx=True, ex=LOCK_SECONDS):
        return False
    thread = threading.Thread(
        target=_run, args=(rt, base, token, total), name="skuai-retrain", daemon=True
    )
    _running[os.getpid()] = thread
    thread.start()
    return True


def _run(rt: Runtime, base: Path, token: str, total: int) -> None:
    shadows = ShadowStore(rt.conn, ttl=rt.settings.result_ttl)
    status: dict[str, Any] = {"state": "running", "started_at": utc_now(), "corrections": total}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = rt.settings.home / "retrain" / f"{stamp}-{token[:8]}"
    try:
        parent = rt.registry.require_active()
        status["parent"] = parent
        shadows.set_retrain_status(status)
        log.info("retraining from %s on %d corrections", parent, total)
        data = folder / "data"
        _link_tree(base, data)
        _export(rt, data)
        version = _train(rt, data, parent, token)
        current = shadows.config()
        shadows.start(version, current.sample if current is not None else DEFAULT_SAMPLE)
        rt.conn.set(LAST_COUNT, total)
        status |= {"state": "succeeded", "version": version, "finished_at": utc_now()}
        log.info("retrained %s from %s: in the shadow, not active", version, parent)
    except Exception as exc:  # visible in the status and the log; retried after RETRY_AFTER
        status |= {"state": "failed", "error": _reason(exc), "finished_at": utc_now()}
        rt.conn.set(BACKOFF, "1", ex=RETRY_AFTER)
        log.exception("retraining failed; next try in %d s", RETRY_AFTER)
    finally:
        shadows.set_retrain_status(status)
        if rt.conn.get(LOCK) == token.encode():
            rt.conn.delete(LOCK)
        shutil.rmtree(folder, ignore_errors=True)


def _link_tree(base: Path, into: Path) -> None:
    """The base dataset's files under `into`, hard links where the filesystem allows."""
    if not base.is_dir():
        raise RetrainFailed(f"SKUAI_RETRAIN_DATA {base} is not a folder")

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:  # another filesystem, or no hard links there
            shutil.copy2(src, dst)

    shutil.copytree(base, into, copy_function=link, ignore=shutil.ignore_patterns(".*"))


def _export(rt: Runtime, data: Path) -> None:
    from training.feedback_export import export_feedback

    feedback = FeedbackStore(rt.conn)
    blobs = rt.store.blobs
    if blobs is None:
        raise RetrainFailed("no blob store: the corrected images cannot be exported")
    report = export_feedback(data, feedback, blobs, tenants=feedback.tenants())
    log.info("exported corrections for retraining: %s", report.counts())


def _train(rt: Runtime, data: Path, parent: str, token: str) -> str:
    """Train in a child process, renewing the lock meanwhile; the new version's name."""
    command = [sys.executable, "-m", "skuai", "train", str(data), "--no-activate", "--json"]
    command += ["--registry", str(rt.settings.registry_dir), *_how(rt, data, parent)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as child:
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(child.stdout or []), daemon=True)
        reader.start()
        while child.poll() is None:
            rt.conn.expire(LOCK, LOCK_SECONDS)
            time.sleep(2.0)
        reader.join()
    if child.returncode != 0:
        raise RetrainFailed(
            f"skuai train exited {child.returncode}: {''.join(output)[-ERROR_TAIL:]}"
        )
    for line in reversed(output):
        if line.startswith("{"):
            return str(json.loads(line)["version"])
    raise RetrainFailed(f"skuai train printed no outcome: {''.join(output)[-ERROR_TAIL:]}")


def _how(rt: Runtime, data: Path, parent: str) -> list[str]:
    """`--from PARENT` when the data adds labels, else a full train in PARENT's config."""
    from training.dataset import labels_of, list_dataset
    from training.lineage import compare

    change = compare(rt.registry.labels(parent), labels_of(list_dataset(data).images))
    if change.empty:
        return ["--config", str(rt.registry.path(parent) / "config.json")]
    return ["--from", parent]  # a dataset that lost SKUs is refused: the status says so


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    return str(message)[-ERROR_TAIL:]
