"""`skuai train`: both cascade stages from a dataset folder into a new registry version."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.errors import DatasetError
from training.config import TrainConfig
from training.dataset import scan, split
from training.labels import Labels
from training.registry import Registry


class TrainingEvents(Protocol):
    """Where training reports its phases and progress (the CLI draws bars; tests stay quiet)."""

    def phase(self, name: str, total: int | None = None) -> Callable[[int], None]:
        """Start a phase; returns the function that advances its progress."""
        ...


class QuietEvents:
    """Reports nothing."""

    def phase(self, name: str, total: int | None = None) -> Callable[[int], None]:
        return lambda n: None


@dataclass(frozen=True)
class TrainOutcome:
    """The version written and its test metrics."""

    version: str
    path: Path
    metrics: dict[str, Any]
    activated: bool


def train(
    data_dir: Path,
    registry: Registry,
    config: TrainConfig,
    *,
    activate: bool = True,
    events: TrainingEvents | None = None,
    keras_verbose: int = 0,
) -> TrainOutcome:
    """Scan, split, decode, fit stage 1 and stage 2, evaluate, and register a new version."""
    events = events or QuietEvents()
    labels, samples = scan(data_dir)
    parts = split(samples, seed=config.seed)
    version, folder = registry.new_version()
    try:
        metrics = _train_into(
            folder, version, labels, parts, config, events, keras_verbose, data_dir
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete version must not linger
        raise
    should_activate = activate or registry.active() is None
    if should_activate:
        registry.activate(version)
    return TrainOutcome(version=version, path=folder, metrics=metrics, activated=should_activate)


def _train_into(
    folder: Path,
    version: str,
    labels: Labels,
    parts: Any,
    config: TrainConfig,
    events: TrainingEvents,
    verbose: int,
    data_dir: Path,
) -> dict[str, Any]:
    from training.architecture import build_stage1, build_stage2
    from training.cascade import Cascade
    from training.evaluate import evaluate
    from training.fit import class_weights, fit_stage, make_dataset
    from training.loading import load_arrays
    from training.report import write_report
    from training.weights import load_reference

    timings: dict[str, float] = {}
    clock = time.perf_counter()
    total = len(parts.train) + len(parts.val) + len(parts.test)
    advance = events.phase("decoding images", total)
    sets = [
        load_arrays(p, labels, size=config.input_size, progress=advance)
        for p in (parts.train, parts.val, parts.test)
    ]
    train_set, val_set, test_set = sets
    skipped = sum(len(s.skipped) for s in sets)
    if len(train_set.skus) == 0:
        raise DatasetError(f"none of the {total} training images could be read")
    timings["decode"] = time.perf_counter() - clock

    _use_mixed_precision_on_gpu()
    reference = (
        load_reference(config.weights, input_size=config.input_size) if config.pretrained else None
    )
    shape: dict[str, Any] = {
        "input_size": config.input_size,
        "width": config.width,
        "batch_norm": config.resolved_batch_norm,
    }
    has_val = len(val_set.skus) > 0

    clock = time.perf_counter()
    on_epoch = events.phase(
        f"training stage 1 (grayscale -> {len(labels.models)} models)", config.epochs
    )
    stage1 = build_stage1(len(labels.models), **shape)
    fit_stage(
        stage1,
        make_dataset(train_set.images, train_set.models, config=config, training=True),
        make_dataset(val_set.images, val_set.models, config=config, training=False)
        if has_val
        else None,
        weights=class_weights(train_set.models, len(labels.models)),
        config=config,
        checkpoint=folder / "checkpoints" / "stage1.keras",
        verbose=verbose,
        reference=reference,
        on_epoch=on_epoch,
    )
    timings["stage 1"] = time.perf_counter() - clock

    clock = time.perf_counter()
    on_epoch = events.phase(
        f"training stage 2 (colour -> {len(labels.skus)} SKUs within the model)", config.epochs
    )
    stage2 = build_stage2(labels.membership, len(labels.skus), **shape)

    def inputs(s: Any) -> dict[str, Any]:
        return {"image": s.images, "model": s.models}

    fit_stage(
        stage2,
        make_dataset(inputs(train_set), train_set.skus, config=config, training=True),
        make_dataset(inputs(val_set), val_set.skus, config=config, training=False)
        if has_val
        else None,
        weights=class_weights(train_set.skus, len(labels.skus)),
        config=config,
        checkpoint=folder / "checkpoints" / "stage2.keras",
        verbose=verbose,
        reference=reference,
        on_epoch=on_epoch,
    )
    timings["stage 2"] = time.perf_counter() - clock

    clock = time.perf_counter()
    events.phase("evaluating on the test split")
    cascade = Cascade.from_keras(
        stage1, stage2, labels, version=version, input_size=config.input_size
    )
    metrics = evaluate(cascade, test_set)
    metrics["skipped_images"] = skipped
    metrics["split"] = {
        "train": len(train_set.skus),
        "val": len(val_set.skus),
        "test": len(test_set.skus),
    }
    timings["evaluate"] = time.perf_counter() - clock
    metrics["timings_seconds"] = timings

    events.phase("writing the version")
    stage1.save(folder / "stage1.keras")
    stage2.save(folder / "stage2.keras")
    labels.save(folder / "labels.json")
    # The dataset path lets later checks (e.g. int8 accuracy) rebuild the same test split.
    recorded = {**config.to_dict(), "data_dir": str(data_dir.resolve())}
    (folder / "config.json").write_text(json.dumps(recorded, indent=2) + "\n")
    write_report(
        folder,
        version=version,
        metrics=metrics,
        labels=labels,
        config=config.to_dict(),
        timings=timings,
        skipped=skipped,
    )
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    # metrics.json last: the registry treats a version as complete only once it exists.
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _use_mixed_precision_on_gpu() -> None:
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
