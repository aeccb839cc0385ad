"""The split a version was trained on, written into the version as `split.json`: every file's
relative path, labels, SHA-256, perceptual hash, duplicate group and part, and the files left out.
With it anyone can check that no test photo has a copy among the training photos (`leaks`), and
later evaluations (the demo) use the very same held-out photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.errors import DatasetError, InvalidArgument
from training.data_check import DataReport
from training.dataset import Sample, Split, labels_of, scan, split
from training.dedup import HASH_SIZE, NEAR_DISTANCE, close_pairs
from training.labels import Labels

SPLIT_FILE = "split.json"
PARTS = ("train", "val", "test")


def checked_split(
    report: DataReport, *, seed: int, force: bool = False
) -> tuple[Labels, Split, dict[str, Any]]:
    """Labels, split and split record of a checked dataset. A dataset with errors is refused
    unless `force`, which trains on the usable files (the record lists the rest)."""
    errors = report.errors()
    if errors and not force:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise DatasetError(
            f"{report.data_dir} has errors: {errors[0]}{more}; see `skuai data check`, fix "
            "them, or pass --force to leave the unusable files out"
        )
    samples = report.samples()
    if not samples:
        raise DatasetError(f"{report.data_dir} has no usable image")
    groups = {report.data_dir / path: number for path, number in report.groups.items()}
    parts = split(samples, seed=seed, groups=groups)
    return labels_of(samples), parts, split_record(report, parts, seed=seed)


def split_record(report: DataReport, parts: Split, *, seed: int) -> dict[str, Any]:
    """The record of `parts` (drawn from `report`'s usable files) as JSON-ready values."""
    part_of = {sample.path: name for name in PARTS for sample in getattr(parts, name)}
    files = []
    for facts in report.usable:
        part = part_of.get(report.data_dir / facts.path)
        if part is None:
            continue
        files.append(
            {
                "path": facts.path,
                "model": facts.model,
                "sku": facts.sku,
                "sha256": facts.sha256,
                "phash": facts.phash,
                "group": report.groups[facts.path],
                "split": part,
            }
        )
    left_out = [{"path": f.path, "reason": f.reason} for f in report.files if not f.usable]
    return {
        "seed": seed,
        "data_dir": str(report.data_dir.resolve()),
        "hash": {"name": "phash", "bits": HASH_SIZE * HASH_SIZE, "max_distance": NEAR_DISTANCE},
        "counts": {name: len(getattr(parts, name)) for name in PARTS},
        "files": files,
        "left_out": left_out,
    }


def write_split(folder: Path, record: dict[str, Any]) -> None:
    """Write `record` as the version's split.json."""
    (folder / SPLIT_FILE).write_text(json.dumps(record, indent=1) + "\n")


def read_split(folder: Path) -> dict[str, Any]:
    """What `write_split` recorded: which file went to which part, with its hashes."""
    data: dict[str, Any] = json.loads((folder / SPLIT_FILE).read_text())
    return data


def recorded_samples(folder: Path, data_dir: Path, part: str) -> list[Sample]:
    """The samples a version put in `part` (train, val or test), as files under `data_dir`."""
    if part not in PARTS:
        raise InvalidArgument(f"part must be one of {', '.join(PARTS)}")
    return [
        Sample(data_dir / row["path"], row["model"], row["sku"])
        for row in read_split(folder)["files"]
        if row["split"] == part
    ]


def version_part(folder: Path, data_dir: Path, part: str, *, seed: int) -> list[Sample]:
    """The samples of `part` as the version was trained: from its split.json, or, for versions
    from before split.json, the plain per-SKU split of `data_dir` by the version's seed."""
    if (folder / SPLIT_FILE).is_file():
        return recorded_samples(folder, data_dir, part)
    _, samples = scan(data_dir)
    parts = split(samples, seed=seed)
    return list({"train": parts.train, "val": parts.val, "test": parts.test}[part])


def leaks(record: dict[str, Any], part: str = "test") -> list[tuple[str, str, int]]:
    """(file in `part`, training file, distance) for every pair within the recorded
    near-duplicate distance (byte-identical files included): empty for a leakage-free split."""
    files = record["files"]
    held = [row for row in files if row["split"] == part]
    train = [row for row in files if row["split"] == "train"]
    i, j, d = close_pairs(
        [row["phash"] for row in held],
        [row["phash"] for row in train],
        max_distance=int(record["hash"]["max_distance"]),
    )
    return [(held[a]["path"], train[b]["path"], int(c)) for a, b, c in zip(i, j, d, strict=True)]
