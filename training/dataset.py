"""The dataset layout `DATA/<model>/<sku>/*.{jpg,jpeg,png,webp}`, and its deterministic split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.errors import DatasetError
from training.labels import Labels

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
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


def scan(data_dir: Path) -> tuple[Labels, list[Sample]]:
    """List every image under DATA/<model>/<sku>/, with clear errors for a bad layout."""
    if not data_dir.is_dir():
        raise DatasetError(f"dataset folder {data_dir} does not exist")
    model_dirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not _hidden(p))
    if not model_dirs:
        raise DatasetError(f"dataset folder {data_dir} has no model folders (DATA/<model>/<sku>/)")
    samples: list[Sample] = []
    skus_by_model: dict[str, tuple[str, ...]] = {}
    for model_dir in model_dirs:
        sku_dirs = sorted(p for p in model_dir.iterdir() if p.is_dir() and not _hidden(p))
        if not sku_dirs:
            raise DatasetError(f"model {model_dir.name!r} has no SKU folders")
        skus_by_model[model_dir.name] = tuple(sku.name for sku in sku_dirs)
        for sku_dir in sku_dirs:
            images = sorted(_images(sku_dir.iterdir()))
            if not images:
                raise DatasetError(f"SKU {model_dir.name}/{sku_dir.name} has no images")
            samples += [Sample(path, model_dir.name, sku_dir.name) for path in images]
    labels = Labels(models=tuple(skus_by_model), skus_by_model=skus_by_model)
    _check_unique_skus(labels)
    return labels, samples


def split(samples: Iterable[Sample], *, seed: int) -> Split:
    """70/20/10 per SKU, deterministic by seed; every SKU keeps at least one training image."""
    by_sku: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for sample in samples:
        by_sku[(sample.model, sample.sku)].append(sample)
    parts: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    for key in sorted(by_sku):
        group = sorted(by_sku[key], key=lambda s: s.path.name)
        random.Random(f"{seed}:{key[0]}/{key[1]}").shuffle(group)
        n_test = round(len(group) * SPLIT_FRACTIONS[2])
        n_val = round(len(group) * SPLIT_FRACTIONS[1])
        if n_test + n_val >= len(group):  # tiny SKUs: training comes first
            n_test, n_val = min(n_test, max(0, len(group) - 1)), 0
        parts[2].extend(group[:n_test])
        parts[1].extend(group[n_test : n_test + n_val])
        parts[0].extend(group[n_test + n_val :])
    return Split(train=tuple(parts[0]), val=tuple(parts[1]), test=tuple(parts[2]))


def _images(paths: Iterable[Path]) -> Iterable[Path]:
    return (p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
