"""`skuai submit`: upload files, folders and archives as batches in parts, with progress, and
resume after Ctrl-C or a network error without re-uploading what the server already has.

Each part is one batch created with an Idempotency-Key derived from its files, and the state
file records each part's batch as soon as the server answers: a rerun of the same command skips
finished parts and safely retries the interrupted one."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.image_formats import ACCEPTED_NAMES, IMAGE_SUFFIXES
from skuai.client import SkuaiClient
from skuai.console import console, make_progress

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")
FINAL_BATCH = frozenset({"completed", "canceled"})
POLL_SECONDS = 1.0


@dataclass
class Part:
    """One upload: up to `part_size` images, or one archive."""

    key: str
    images: list[str] = field(default_factory=list)
    archive: str | None = None
    batch_id: str | None = None


@dataclass
class SubmitState:
    """What has been uploaded so far, saved after every part."""

    api: str
    parts: list[Part]

    @classmethod
    def load_or_plan(cls, path: Path, api: str, parts: list[Part]) -> SubmitState:
        """Resume the saved state of this exact submission, or start a new one."""
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("api") == api and [p["key"] for p in saved["parts"]] == [
                p.key for p in parts
            ]:
                return cls(api=api, parts=[Part(**p) for p in saved["parts"]])
        return cls(api=api, parts=parts)

    def save(self, path: Path) -> None:
        """Write atomically so an interruption never leaves a torn file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"api": self.api, "parts": [asdict(p) for p in self.parts]}))
        tmp.replace(path)


def collect(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Images (from files and folders, sorted) and archives among the given paths."""
    images: list[Path] = []
    archives: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.name.lower().endswith(ARCHIVE_SUFFIXES):
            archives.append(path)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(path)
        else:
            raise ConfigError(f"{path}: not an image ({ACCEPTED_NAMES}) or archive (zip, tar)")
    if not images and not archives:
        raise ConfigError("nothing to submit: no images or archives found")
    return images, archives


def plan(images: list[Path], archives: list[Path], part_size: int, api: str) -> list[Part]:
    """Split into parts; each part's key names exactly its files, sizes and times."""
    parts = [
        [str(p.resolve()) for p in images[i : i + part_size]]
        for i in range(0, len(images), part_size)
    ]
    planned = [Part(key=_key(api, files), images=files) for files in parts]
    planned += [Part(key=_key(api, [str(a.resolve())]), archive=str(a.resolve())) for a in archives]
    return planned


def _key(api: str, files: list[str]) -> str:
    digest = hashlib.sha256(api.encode())
    for name in files:
        stat = Path(name).stat()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "skuai-submit-" + digest.hexdigest()[:40]


def state_path(home: Path, parts: list[Part]) -> Path:
    """Where the state of this submission lives (one file per distinct submission)."""
    digest = hashlib.sha256("".join(p.key for p in parts).encode()).hexdigest()[:16]
    return home / "submits" / f"{digest}.json"


def upload(client: SkuaiClient, state: SubmitState, path: Path) -> None:
    """Upload every part that has no batch yet, saving the state after each."""
    pending = [p for p in state.parts if p.batch_id is None]
    done_images = sum(len(p.images) for p in state.parts if p.batch_id)
    total = sum(len(p.images) for p in state.parts) or None
    if done_images:
        console.print(
            f"resuming: {len(state.parts) - len(pending)} of {len(state.parts)} parts "
            "already on the server"
        )
    with make_progress() as progress:
        task = progress.add_task("uploading", total=total, completed=done_images)
        for part in pending:
            batch = client.create_batch(
                [(Path(name).name, Path(name)) for name in part.images],
                archive=Path(part.archive) if part.archive else None,
                idempotency_key=part.key,
            )
            part.batch_id = batch["id"]
            state.save(path)
            progress.advance(task, len(part.images))


def wait(client: SkuaiClient, state: SubmitState) -> list[dict[str, Any]]:
    """Poll every batch until it completes, with a classification progress bar."""
    ids = [p.batch_id for p in state.parts if p.batch_id]
    with make_progress() as progress:
        task = progress.add_task("classifying", total=None)
        while True:
            batches = [client.batch(batch_id) for batch_id in ids]
            total = sum(b["total"] for b in batches)
            finished = sum(
                b["counts"][s] for b in batches for s in ("succeeded", "failed", "canceled")
            )
            progress.update(task, total=total, completed=finished)
            if all(b["status"] in FINAL_BATCH for b in batches):
                return batches
            time.sleep(POLL_SECONDS)


def export(client: SkuaiClient, state: SubmitState, out: Path) -> None:
    """Write every batch's results to one CSV or JSON-lines file."""
    media = "text/csv" if out.suffix.lower() == ".csv" else "application/x-ndjson"
    with out.open("wb") as handle:
        for i, part in enumerate(p for p in state.parts if p.batch_id):
            lines = _lines(client.export(str(part.batch_id), media))
            if media == "text/csv" and i > 0:
                next(lines, None)  # one header for the whole file
            for line in lines:
                handle.write(line)


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending
