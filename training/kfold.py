"""K-fold cross-validation: K trainings, each tested on its own fold of the dataset, so a
result comes with its spread. Folds are drawn per SKU from whole duplicate groups (a photo and
its copies share a fold), as the ordinary split draws its parts (training/dataset.py); the rest
of each fold's data is split into training and validation the ordinary way."""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared.errors import DatasetError, InvalidArgument
from training.config import TrainConfig
from training.data_check import DataReport
from training.dataset import Sample, Split, labels_of, split

# The metrics reported for each model: (key in the report, where evaluate() puts it)
CASCADE_METRICS = {
    "sku_top1": ("end_to_end", "sku_top1"),
    "sku_top5": ("end_to_end", "sku_top5"),
    "sku_balanced_accuracy": ("end_to_end", "sku_balanced_accuracy"),
    "model_top1": ("end_to_end", "model_top1"),
}
FLAT_METRICS = ("sku_top1", "sku_top5", "sku_balanced_accuracy", "model_top1")


def fold_units(
    samples: Sequence[Sample], groups: Mapping[Path, int] | None, k: int, *, seed: int
) -> list[list[Sample]]:
    """The K test folds: each SKU's units (a photo and its copies) shuffled by seed and dealt
    to the fold that has the fewest of that SKU's photos. A group spanning several SKUs, and a
    SKU of a single unit, are never tested: they stay in every fold's training data."""
    if k < 2:
        raise InvalidArgument(f"--kfold must be at least 2 (got {k})")
    units: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for number, sample in enumerate(samples):
        group = groups.get(sample.path) if groups is not None else None
        units[("group", group) if group is not None else ("sample", number)].append(sample)
    by_sku: dict[tuple[str, str], list[list[Sample]]] = defaultdict(list)
    for unit in units.values():
        if len({(s.model, s.sku) for s in unit}) == 1:
            by_sku[(unit[0].model, unit[0].sku)].append(sorted(unit, key=lambda s: s.path.name))
    folds: list[list[Sample]] = [[] for _ in range(k)]
    for key in sorted(by_sku):
        sku_units = sorted(by_sku[key], key=lambda unit: unit[0].path.name)
        if len(sku_units) < 2:
            continue
        random.Random(f"{seed}:kfold:{key[0]}/{key[1]}").shuffle(sku_units)
        held = [0] * k
        for unit in sku_units:
            fold = min(range(k), key=lambda f: (held[f], f))
            held[fold] += len(unit)
            folds[fold].extend(unit)
    return folds


def fold_splits(
    samples: Sequence[Sample], groups: Mapping[Path, int] | None, k: int, *, seed: int
) -> list[Split]:
    """One Split per fold: that fold as the test part; the other photos split into training and
    validation by the ordinary per-SKU split (whose own test share joins training)."""
    folds = fold_units(samples, groups, k, seed=seed)
    if any(not fold for fold in folds):
        raise DatasetError(f"too few photos for {k} folds: some fold would test nothing")
    splits = []
    for fold in folds:
        held = {s.path for s in fold}
        rest = [s for s in samples if s.path not in held]
        parts = split(rest, seed=seed, groups=groups)
        splits.append(Split(train=parts.train + parts.test, val=parts.val, test=tuple(fold)))
    return splits


def run_kfold(
    report: DataReport,
    config: TrainConfig,
    k: int,
    *,
    force: bool = False,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train and test K times (the flat comparison too, with `config.compare_flat`); each
    metric as mean, standard deviation and per-fold values."""
    errors = report.errors()
    if errors and not force:
        raise DatasetError(f"{report.data_dir} has errors: {errors[0]}; see `skuai data check`")
    samples = report.samples()
    groups = {report.data_dir / path: number for path, number in report.groups.items()}
    labels = labels_of(samples)
    folds = []
    for number, parts in enumerate(fold_splits(samples, groups, k, seed=config.seed)):
        row = _one_fold(labels, parts, config, number)
        folds.append(row)
        if on_fold is not None:
            on_fold(row)
    return {
        "k": k,
        "seed": config.seed,
        "config": config.to_dict(),
        "folds": folds,
        "cascade": spread([f["cascade"] for f in folds]),
        **({"flat": spread([f["flat"] for f in folds])} if config.compare_flat else {}),
    }


def _one_fold(labels: Any, parts: Split, config: TrainConfig, number: int) -> dict[str, Any]:
    """Fit on the fold's training part, measure on its test part."""
    from training.evaluate import evaluate, evaluate_flat
    from training.loading import load_arrays
    from training.split_fit import cascade_of, fit_split

    clock = time.perf_counter()
    trained = fit_split(labels, parts, config)
    test = load_arrays(parts.test, labels, size=config.input_size)
    measured = evaluate(cascade_of(trained, labels, config, f"fold{number}"), test)
    row: dict[str, Any] = {
        "fold": number,
        "sizes": {"train": len(parts.train), "val": len(parts.val), "test": len(parts.test)},
        "cascade": {key: measured[a][b] for key, (a, b) in CASCADE_METRICS.items()},
    }
    if "flat" in trained:
        flat = evaluate_flat(trained["flat"], test, labels, width=config.flat_width)
        row["flat"] = {key: flat[key] for key in FLAT_METRICS}
    row["seconds"] = round(time.perf_counter() - clock, 1)
    return row


def spread(rows: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Each metric's mean, sample standard deviation and per-fold values."""
    return {
        key: {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "folds": values,
        }
        for key in rows[0]
        for values in [[float(row[key]) for row in rows]]
    }
