"""`skuai feedback export DATA`: corrected images in the dataset layout, ready for `skuai train`.

Each job's standing correction (shared/feedback_store.py) places its image at
`DATA/<model>/<sku>/<job id>.<ext>`: a `sku` correction under its catalog model; a
`not_in_catalog` one under its new label, in the model the correction named, else the model the
job was predicted as. A `model` correction names no SKU, so it has no folder: it is listed as
skipped. The image comes from the review queue (kept for review) or, for a tenant whose review
opt-in keeps corrected jobs and while the sweeper has not deleted it yet, from the upload itself
(never for a tenant that did not opt in); a job whose image is gone is listed as such.

Images that are near-duplicates (training/dedup.py's perceptual hash) of a photo already in DATA,
of one in `--dedup-against` folders, or of one exported before them are left out. Exporting again
is safe: a job already in place is unchanged, and one whose correction changed moves. Every
decision is written to `DATA/.skuai-feedback/manifest-<time>.json` and `.csv` (hidden, so the
dataset scan ignores it)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from shared.blobs import BlobStore
from shared.blobs.store import image_key
from shared.errors import InvalidImage, UnsupportedMediaType
from shared.exports import csv_cell
from shared.feedback_store import MODEL, NOT_IN_CATALOG, Correction, FeedbackStore
from shared.images import decode, sniff
from shared.review_store import CORRECTED, ReviewStore
from training.dataset import list_dataset
from training.dedup import HASH_INPUT, close_pairs, perceptual_hash
from training.loading import MAX_TRAINING_PIXELS
from training.photo_facts import inspect_all

MANIFEST_DIR = ".skuai-feedback"
SUFFIXES = {"JPEG": ".jpg", "HEIF": ".heic", "TIFF": ".tif"}  # else "." + the format, lower
WRITTEN, UNCHANGED, DUPLICATE, IMAGE_GONE, MODEL_ONLY, UNREADABLE = (
    "written",
    "unchanged",
    "duplicate",
    "image_gone",
    "model_only",
    "unreadable",
)


@dataclass
class ManifestRow:
    """Where one exported (or skipped) image came from, and what became of it."""

    job_id: str
    tenant: str
    batch_id: str | None
    ref: str | None
    kind: str
    model: str | None
    sku: str | None
    new_label: bool
    predicted_model: str | None
    predicted_sku: str | None
    model_version: str | None
    corrected_at: str
    source: str | None  # "review" (kept for review) or "upload" (not swept yet)
    reasons: str  # why the review queue kept it, comma-separated
    outcome: str
    path: str | None = None  # relative to DATA
    duplicate_of: str | None = None


@dataclass(frozen=True)
class ExportReport:
    """What an export did."""

    rows: list[ManifestRow]
    manifest: Path

    def counts(self) -> dict[str, int]:
        """Rows by outcome."""
        found: dict[str, int] = {}
        for row in self.rows:
            found[row.outcome] = found.get(row.outcome, 0) + 1
        return found


def export_feedback(
    data_dir: Path,
    feedback: FeedbackStore,
    blobs: BlobStore,
    *,
    tenants: Iterable[str],
    since: float | None = None,
    dedup_against: Iterable[Path] = (),
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the tenants' corrected images (corrected at or after `since`) into `data_dir`."""
    review = ReviewStore(feedback.conn, blobs)
    corrections = [c for tenant in tenants for c in feedback.since(tenant, since)]
    data_dir.mkdir(parents=True, exist_ok=True)
    placed = _placed(data_dir, {c.job_id for c in corrections})
    known = _hashes([data_dir, *dedup_against], exclude=set(placed))
    uploads = {t for t in {c.tenant for c in corrections} if CORRECTED in review.settings(t).keep}
    rows = []
    for correction in corrections:
        upload = blobs if correction.tenant in uploads else None
        rows.append(_export_one(data_dir, correction, review, upload, placed, known))
        if progress is not None:
            progress(1)
    return ExportReport(rows, _write_manifest(data_dir, rows))


def _export_one(
    data_dir: Path,
    correction: Correction,
    review: ReviewStore,
    uploads: BlobStore | None,
    placed: dict[str, list[Path]],
    known: dict[str, str],
) -> ManifestRow:
    """One correction's row; `uploads`: where to look for an image not kept for review (only
    for a tenant that opted in to keeping corrected jobs)."""
    row = _row(correction)
    if correction.kind == MODEL or not correction.model or not correction.sku:
        row.outcome = MODEL_ONLY
        return row
    kept = review.find(correction.tenant, correction.job_id)
    row.reasons = ",".join(kept.reasons) if kept else ""
    image = review.image(correction.tenant, correction.job_id) if kept else None
    row.source = "review" if image is not None else None
    if image is None and uploads is not None:
        image = uploads.get(image_key(correction.job_id))
    if image is not None and row.source is None:
        row.source = "upload"
    if image is None:
        row.outcome = IMAGE_GONE
        return row
    try:
        image_format = sniff(image, max_pixels=MAX_TRAINING_PIXELS)
        phash = perceptual_hash(decode(image, size=HASH_INPUT, max_pixels=MAX_TRAINING_PIXELS))
    except (InvalidImage, UnsupportedMediaType):
        row.outcome = UNREADABLE
        return row
    folder = data_dir / correction.model / correction.sku
    target = folder / (correction.job_id + SUFFIXES.get(image_format, "." + image_format.lower()))
    row.path = target.relative_to(data_dir).as_posix()
    if target in placed.get(correction.job_id, []):
        row.outcome = UNCHANGED
        return row
    if (twin := _near(phash, known)) is not None:
        row.outcome, row.duplicate_of, row.path = DUPLICATE, twin, None
        return row
    for old in placed.get(correction.job_id, []):  # its correction changed: it moves
        old.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(image)
    known[phash] = row.path
    row.outcome = WRITTEN
    return row


def _row(correction: Correction) -> ManifestRow:
    predicted = correction.predicted or {}
    return ManifestRow(
        job_id=correction.job_id,
        tenant=correction.tenant,
        batch_id=correction.batch_id,
        ref=correction.ref,
        kind=correction.kind,
        model=correction.model,
        sku=correction.sku,
        new_label=correction.kind == NOT_IN_CATALOG,
        predicted_model=predicted.get("model"),
        predicted_sku=predicted.get("sku"),
        model_version=correction.model_version,
        corrected_at=correction.at,
        source=None,
        reasons="",
        outcome="",
    )


def _placed(data_dir: Path, job_ids: set[str]) -> dict[str, list[Path]]:
    """Files a former export wrote for these jobs (named by job id), wherever they are."""
    found: dict[str, list[Path]] = {}
    for path in data_dir.glob("*/*/*"):
        if path.stem in job_ids and path.is_file():
            found.setdefault(path.stem, []).append(path)
    return found


def _hashes(folders: list[Path], exclude: set[str]) -> dict[str, str]:
    """Perceptual hash -> a photo with it, over every dataset folder given that exists (the
    files of jobs being exported again are left out: they are not duplicates of themselves)."""
    known: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
            continue
        samples = [s for s in list_dataset(folder).images if s.path.stem not in exclude]
        for facts in inspect_all(samples, folder):
            if facts.phash is not None:
                known.setdefault(facts.phash, f"{folder}/{facts.path}")
    return known


def _near(phash: str, known: dict[str, str]) -> str | None:
    """The known photo `phash` is a near-duplicate of, if any."""
    if phash in known:
        return known[phash]
    hashes = list(known)
    _, j, _ = close_pairs([phash], hashes)
    return known[hashes[int(j[0])]] if len(j) else None


def _write_manifest(data_dir: Path, rows: list[ManifestRow]) -> Path:
    folder = data_dir / MANIFEST_DIR
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"manifest-{stamp}.json"
    path.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    with path.with_suffix(".csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(ManifestRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in asdict(r).items()} for r in rows)
    return path
