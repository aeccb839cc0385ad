"""The dataset layout `DATA/<model>/<sku>/*` (every accepted image format), and its deterministic
split, which keeps each group of duplicate photos within one part."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.errors import DatasetError
from shared.image_formats import IMAGE_SUFFIXES
from training.labels import Labels

SPLIT_FRACTIONS = (0.7, 0.2, 0.1)  # train, validation, test


@dataclass(frozen=True)
class Sample:
    """One image of the dataset and its labels."""

    path: Path
    model: str
    sku: str


@dataclass(frozen=True)
class Split:
    """Train, validation and test samples: disjoint, stratified by SKU."""

    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...]


@dataclass(frozen=True)
class Listing:
    """Every file in the SKU folders of a dataset, before anything is decoded: the images (by
    name) and the files whose names are not an image format's, which are reported, not used."""

    skus_by_model: dict[str, tuple[str, ...]]
    images: tuple[Sample, ...]
    other_files: tuple[Sample, ...]
    outside: tuple[Path, ...] = ()  # files in model folders, folders in SKU folders: not read


def list_dataset(data_dir: Path) -> Listing:
    """The files under DATA/<model>/<sku>/; raises only when there is no such layout at all.
    Hidden files and folders (.DS_Store, .git) are not part of a dataset."""
    if not data_dir.is_dir():
        raise DatasetError(f"dataset folder {data_dir} does not exist")
    model_dirs = _folders(data_dir)
    if not model_dirs:
        raise DatasetError(f"dataset folder {data_dir} has no model folders (DATA/<model>/<sku>/)")
    images: list[Sample] = []
    others: list[Sample] = []
    outside: list[Path] = []
    skus_by_model: dict[str, tuple[str, ...]] = {}
    for model_dir in model_dirs:
        sku_dirs = _folders(model_dir)
        skus_by_model[model_dir.name] = tuple(sku.name for sku in sku_dirs)
        outside += [p for p in _visible(model_dir) if not p.is_dir()]
        for sku_dir in sku_dirs:
            for path in _visible(sku_dir):
                if not path.is_file():
                    outside.append(path)
                    continue
                sample = Sample(path, model_dir.name, sku_dir.name)
                (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(sample)
    return Listing(skus_by_model, tuple(images), tuple(others), tuple(outside))


def scan(data_dir: Path) -> tuple[Labels, list[Sample]]:
    """Every image under DATA/<model>/<sku>/, with clear errors for a bad layout. Files that
    are not images are in `list_dataset(...).other_files`; `skuai data check` reports them."""
    listing = list_dataset(data_dir)
    for model, skus in listing.skus_by_model.items():
        if not skus:
            raise DatasetError(f"model {model!r} has no SKU folders")
    counts = {(s.model, s.sku) for s in listing.images}
    for model, skus in listing.skus_by_model.items():
        for sku in skus:
            if (model, sku) not in counts:
                raise DatasetError(f"SKU {model}/{sku} has no images")
    return labels_of(listing.images), list(listing.images)


def labels_of(samples: Iterable[Sample]) -> Labels:
    """The labels of the models and SKUs that have samples (sorted by name)."""
    skus: dict[str, set[str]] = defaultdict(set)
    for sample in samples:
        skus[sample.model].add(sample.sku)
    skus_by_model = {model: tuple(sorted(skus[model])) for model in sorted(skus)}
    labels = Labels(models=tuple(skus_by_model), skus_by_model=skus_by_model)
    _check_unique_skus(labels)
    return labels


def split(
    samples: Iterable[Sample], *, seed: int, groups: Mapping[Path, int] | None = None
) -> Split:
    """70/20/10 per SKU, deterministic by seed; every SKU keeps at least one training image.
    Samples with the same number in `groups` (copies of one photo) land in the same part, and a
    group that spans several SKUs goes to training: it cannot test a label it contradicts."""
    units: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for number, sample in enumerate(samples):
        group = groups.get(sample.path) if groups is not None else None
        units[("group", group) if group is not None else ("sample", number)].append(sample)
    by_sku: dict[tuple[str, str], list[list[Sample]]] = defaultdict(list)
    parts: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    for unit in units.values():
        if len({(s.model, s.sku) for s in unit}) > 1:
            parts[0].extend(unit)
        else:
            by_sku[(unit[0].model, unit[0].sku)].append(sorted(unit, key=_name))
    for key in sorted(by_sku):
        _split_sku(by_sku[key], random.Random(f"{seed}:{key[0]}/{key[1]}"), parts)
    return Split(train=tuple(parts[0]), val=tuple(parts[1]), test=tuple(parts[2]))


def _split_sku(
    units: list[list[Sample]],
    rng: random.Random,
    parts: tuple[list[Sample], list[Sample], list[Sample]],
) -> None:
    """Deal one SKU's units (a photo and its copies) out: test and validation take whole units
    while they stay within their share; training takes the rest."""
    units = sorted(units, key=lambda unit: _name(unit[0]))
    rng.shuffle(units)
    total = sum(len(unit) for unit in units)
    n_test = round(total * SPLIT_FRACTIONS[2])
    n_val = round(total * SPLIT_FRACTIONS[1])
    if n_test + n_val >= total:  # tiny SKUs: training comes first
        n_test, n_val = min(n_test, max(0, total - 1)), 0
    room = [total, n_val, n_test]  # what each part (train, val, test) may still take
    for unit in units:
        part = next(p for p in (2, 1, 0) if len(unit) <= room[p])
        room[part] -= len(unit)
        parts[part].extend(unit)


def _name(sample: Sample) -> str:
    return sample.path.name


def _folders(path: Path) -> list[Path]:
    return [p for p in _visible(path) if p.is_dir()]


def _visible(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not _hidden(p))


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _check_unique_skus(labels: Labels) -> None:
    seen: dict[str, str] = {}
    for model, skus in labels.skus_by_model.items():
        for sku in skus:
            if sku in seen:
                raise DatasetError(
                    f"SKU {sku!r} appears under both {seen[sku]!r} and {model!r}; "
                    "SKU folder names must be unique"
                )
            seen[sku] = model
