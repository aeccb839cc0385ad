"""`skuai data check`: one report on a dataset before any training. Errors (files that are not
images or cannot be read, clashing SKU names, a SKU without a usable image) stop `skuai train`;
warnings (small or uneven SKUs, duplicates, images smaller than the input) do not."""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import InvalidArgument
from training.dataset import Listing, Sample, list_dataset
from training.dedup import HASH_SIZE, NEAR_DISTANCE, near_groups
from training.photo_facts import NOT_IMAGE, UNREADABLE, PhotoFacts, inspect_all

MIN_PER_SKU = 50  # photos per SKU below which a SKU is reported as small
MAX_IMBALANCE = 10.0  # largest / smallest SKU above which the catalog is reported as uneven
DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True)
class DataReport:
    """The check's findings on one dataset folder."""

    data_dir: Path
    input_size: int
    min_per_sku: int
    skus_by_model: dict[str, tuple[str, ...]]
    files: tuple[PhotoFacts, ...]  # every file of every SKU folder, usable or not
    groups: dict[str, int]  # usable file path -> its near-duplicate group
    outside: tuple[str, ...] = ()  # paths outside the layout, which training does not read

    @property
    def usable(self) -> tuple[PhotoFacts, ...]:
        """The files training can use."""
        return tuple(f for f in self.files if f.usable)

    def problems(self, kind: str) -> list[PhotoFacts]:
        """The files ruled out for `kind` (NOT_IMAGE or UNREADABLE)."""
        return [f for f in self.files if f.problem == kind]

    def counts(self) -> dict[str, dict[str, int]]:
        """Usable images per model and SKU (SKUs with none included, at 0)."""
        usable = Counter((f.model, f.sku) for f in self.usable)
        return {
            model: {sku: usable[(model, sku)] for sku in skus}
            for model, skus in self.skus_by_model.items()
        }

    def duplicate_groups(self) -> tuple[list[list[str]], list[list[str]]]:
        """(exact, near): byte-identical files, and groups of near-identical photos (re-encoded
        or resized copies) that are not all byte-identical; each group is a list of paths."""
        by_sha: dict[str, list[str]] = defaultdict(list)
        by_group: dict[int, list[str]] = defaultdict(list)
        for f in self.usable:
            by_sha[str(f.sha256)].append(f.path)
            by_group[self.groups[f.path]].append(f.path)
        sha_of = {f.path: f.sha256 for f in self.usable}
        exact = [paths for paths in by_sha.values() if len(paths) > 1]
        near = [
            paths
            for paths in by_group.values()
            if len(paths) > 1 and len({sha_of[p] for p in paths}) > 1
        ]
        return exact, near

    def too_small(self) -> list[PhotoFacts]:
        """Usable images whose shorter side is below the input size (they get upscaled)."""
        return [f for f in self.usable if min(f.width or 0, f.height or 0) < self.input_size]

    def imbalance(self) -> float | None:
        """Largest / smallest SKU by usable images (None without two SKUs that have any)."""
        sizes = [n for skus in self.counts().values() for n in skus.values() if n > 0]
        return max(sizes) / min(sizes) if len(sizes) > 1 else None

    def clashes(self) -> list[list[str]]:
        """SKU folders (model/sku) whose names are equal ignoring case, spaces and punctuation,
        or equal outright under two models."""
        by_key: dict[str, list[str]] = defaultdict(list)
        for model, skus in self.skus_by_model.items():
            for sku in skus:
                by_key[_name_key(sku)].append(f"{model}/{sku}")
        return [names for names in by_key.values() if len(names) > 1]

    def errors(self) -> list[str]:
        """What must be fixed (or left out with `skuai train --force`) before training."""
        out = [f"{f.path}: {f.reason}" for f in self.files if not f.usable]  # files first
        out += [f"model {m!r} has no SKU folders" for m, s in self.skus_by_model.items() if not s]
        out += [f"SKU folder names clash: {', '.join(names)}" for names in self.clashes()]
        out += [
            f"SKU {model}/{sku} has no usable image"
            for model, skus in self.counts().items()
            for sku, n in skus.items()
            if n == 0
        ]
        return out

    def warnings(self) -> list[str]:
        """What training survives but a user should know."""
        out = [
            f"SKU {model}/{sku} has {n} image{'s' * (n != 1)} (< {self.min_per_sku})"
            for model, skus in self.counts().items()
            for sku, n in skus.items()
            if 0 < n < self.min_per_sku
        ]
        ratio = self.imbalance()
        if ratio is not None and ratio > MAX_IMBALANCE:
            out.append(f"uneven SKUs: the largest has {ratio:.1f}x the images of the smallest")
        out += [f"{path}: outside DATA/<model>/<sku>/*, not read" for path in self.outside]
        exact, near = self.duplicate_groups()
        out += [f"byte-identical files{_across(paths)}: {', '.join(paths)}" for paths in exact]
        out += [f"near-duplicate photos{_across(paths)}: {', '.join(paths)}" for paths in near]
        tiny = self.too_small()
        if tiny:
            out.append(
                f"{len(tiny)} image{'s are' if len(tiny) > 1 else ' is'} smaller than the "
                f"{self.input_size}-pixel input "
                f"(smallest {min(min(f.width or 0, f.height or 0) for f in tiny)} pixels)"
            )
        return out

    def totals(self) -> dict[str, int]:
        """How many files, usable images, models and SKUs."""
        return {
            "files": len(self.files),
            "usable_images": len(self.usable),
            "models": len(self.skus_by_model),
            "skus": sum(len(skus) for skus in self.skus_by_model.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        """The full report as JSON-ready values (what `skuai data check --json` prints)."""
        exact, near = self.duplicate_groups()
        return {
            "data_dir": str(self.data_dir),
            "input_size": self.input_size,
            "min_per_sku": self.min_per_sku,
            "ok": not self.errors(),
            "errors": self.errors(),
            "warnings": self.warnings(),
            "totals": self.totals(),
            "images_per_sku": self.counts(),
            "imbalance_ratio": self.imbalance(),
            "not_images": [_problem_row(f) for f in self.problems(NOT_IMAGE)],
            "unreadable": [_problem_row(f) for f in self.problems(UNREADABLE)],
            "clashing_sku_names": self.clashes(),
            "exact_duplicates": exact,
            "near_duplicates": near,
            "near_duplicate_hash": {
                "name": "phash",
                "bits": HASH_SIZE * HASH_SIZE,
                "max_distance": NEAR_DISTANCE,
            },
            "outside_layout": list(self.outside),
            "too_small": [
                {"path": f.path, "width": f.width, "height": f.height} for f in self.too_small()
            ],
            "files": [{**f.to_dict(), "group": self.groups.get(f.path)} for f in self.files],
        }

    def samples(self) -> list[Sample]:
        """The usable files as training samples."""
        return [Sample(self.data_dir / f.path, f.model, f.sku) for f in self.usable]


def check_dataset(
    data_dir: Path,
    *,
    input_size: int = DEFAULT_INPUT_SIZE,
    min_per_sku: int = MIN_PER_SKU,
    progress: Callable[[int], None] | None = None,
) -> DataReport:
    """Inspect every file under DATA/<model>/<sku>/ and group near-duplicates."""
    if input_size < 1 or min_per_sku < 0:
        raise InvalidArgument("--input-size must be at least 1 and --min-per-sku at least 0")
    listing = list_dataset(data_dir)
    files = inspect_all(_every_file(listing), data_dir, progress=progress)
    usable = [f for f in files if f.usable]
    numbers = near_groups([str(f.phash) for f in usable])
    return DataReport(
        data_dir=data_dir,
        input_size=input_size,
        min_per_sku=min_per_sku,
        skus_by_model=listing.skus_by_model,
        files=tuple(files),
        groups={f.path: n for f, n in zip(usable, numbers, strict=True)},
        outside=tuple(p.relative_to(data_dir).as_posix() for p in listing.outside),
    )


def files_to_check(data_dir: Path) -> int:
    """How many files the check will open (for a progress bar)."""
    listing = list_dataset(data_dir)
    return len(listing.images) + len(listing.other_files)


def _every_file(listing: Listing) -> list[Sample]:
    return sorted((*listing.images, *listing.other_files), key=lambda s: s.path)


def _name_key(name: str) -> str:
    """A folder name without case, spaces and punctuation: "Air Max 90" == "air-max_90"."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


def _across(paths: list[str]) -> str:
    """A note for copies filed under several SKUs: contradictory labels, kept in training."""
    skus = {path.rsplit("/", 1)[0] for path in paths}
    return f" under {len(skus)} different SKUs (kept in training)" if len(skus) > 1 else ""


def _problem_row(facts: PhotoFacts) -> dict[str, Any]:
    return {"path": facts.path, "reason": facts.reason}
