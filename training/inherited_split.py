"""The split of an incremental version: every photo its parent had keeps the parent's part (by
path, else by SHA-256), so "known SKUs keep their accuracy" is measured on the very same test
photos; only new photos are split, with copies of a photo (near-duplicate groups) kept in one
part, joining the part of a parent photo they copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.errors import DatasetError, InvalidArgument
from training.data_check import DataReport
from training.dataset import Sample, Split, split
from training.split_record import PARTS, SPLIT_FILE, checked_split, read_split, split_record


def inherited_split(
    report: DataReport, parent_folder: Path, *, seed: int, force: bool = False
) -> tuple[Split, dict[str, Any]]:
    """The split of `report`'s usable files that keeps `parent_folder`'s parts, and its record
    (split.json's shape, with `inherited` counting the photos that kept their part)."""
    if not (parent_folder / SPLIT_FILE).is_file():
        raise InvalidArgument(
            f"{parent_folder.name} has no {SPLIT_FILE} (it was trained before splits were "
            "recorded), so its test photos are unknown: train a full version instead"
        )
    checked_split(report, seed=seed, force=force)  # the same refusals as a full train
    known = _parent_parts(report, read_split(parent_folder)["files"])
    samples = {
        facts.path: Sample(report.data_dir / facts.path, facts.model, facts.sku)
        for facts in report.usable
    }
    by_group: dict[int, str] = {}
    for path, part in known.items():
        by_group.setdefault(report.groups[path], part)
    for path in samples:  # a new copy of a parent photo goes where the photo went
        if path not in known and report.groups[path] in by_group:
            known[path] = by_group[report.groups[path]]
    parts: dict[str, list[Sample]] = {name: [] for name in PARTS}
    for path, part in known.items():
        parts[part].append(samples[path])
    fresh = [sample for path, sample in samples.items() if path not in known]
    groups = {report.data_dir / path: report.groups[path] for path in samples}
    new_parts = split(fresh, seed=seed, groups=groups)
    for name in PARTS:
        parts[name] += getattr(new_parts, name)
    if not parts["train"]:
        raise DatasetError(f"{report.data_dir} has no training photo")
    result = Split(train=tuple(parts["train"]), val=tuple(parts["val"]), test=tuple(parts["test"]))
    record = split_record(report, result, seed=seed)
    record["inherited"] = {"from": parent_folder.name, "photos": len(known), "new": len(fresh)}
    return result, record


def _parent_parts(report: DataReport, rows: list[dict[str, Any]]) -> dict[str, str]:
    """The parent's part of each usable file it had: the same path with the same bytes, or
    else the same bytes anywhere (a renamed or moved copy)."""
    by_path = {row["path"]: row for row in rows}
    by_sha = {row["sha256"]: row["split"] for row in rows}
    known: dict[str, str] = {}
    for facts in report.usable:
        row = by_path.get(facts.path)
        if row is not None and row["sha256"] == facts.sha256:
            known[facts.path] = row["split"]
        elif facts.sha256 in by_sha:
            known[facts.path] = by_sha[str(facts.sha256)]
    return known
