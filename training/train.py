"""`skuai train`: both cascade stages from a dataset folder into a new registry version."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import DatasetError
from training.config import TrainConfig
from training.data_check import DataReport, check_dataset, files_to_check
from training.determinism import deterministic_ops, seed_everything
from training.labels import Labels
from training.lineage import lineage
from training.registry import Registry
from training.split_record import checked_split, write_split

if TYPE_CHECKING:
    from training.pipeline import ImageSource
    from training.train_counts import TrainCounts


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
    check: DataReport | None = None,
    force: bool = False,
) -> TrainOutcome:
    """Check, split (duplicates kept together), decode, fit stage 1 and stage 2, evaluate, and
    register a new version with its split. `check`: a report already made of `data_dir`;
    `force`: train on the usable files of a dataset with errors."""
    events = events or QuietEvents()
    if check is None:
        progress = events.phase("checking the dataset", files_to_check(data_dir))
        check = check_dataset(data_dir, input_size=config.input_size, progress=progress)
    labels, parts, record = checked_split(check, seed=config.seed, force=force)
    version, folder = registry.new_version()
    try:
        write_split(folder, record)  # which file went where, with its hashes
        with deterministic_ops():  # with the seeds, the same run gives the same weights
            metrics = _train_into(
                folder,
                version,
                labels,
                parts,
                config,
                events,
                keras_verbose,
                data_dir,
                left_out=len(record["left_out"]),
                lineage=lineage(check),  # a full train: no parent
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
    *,
    left_out: int,
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """Fit every model of the run, evaluate the cascade on the test split, write the version."""
    from training.mixed_precision import resolve
    from training.pipeline import ImageSource
    from training.weights import load_reference

    precision = resolve(config.precision)
    reference = (
        load_reference(config.weights, input_size=config.input_size) if config.pretrained else None
    )
    runs = _planned_runs(labels, config, reference)
    stages = _Stages(folder, labels, parts, config, events, verbose, ImageSource(config.input_size))
    trained = _fit_runs(stages, runs, precision)
    metrics, train_counts = _evaluate_version(stages, trained, version, precision, left_out)
    metrics["lineage"] = lineage
    _write_version(stages, trained, version, precision, metrics, train_counts, data_dir)
    return metrics


# (key, progress title, target, starting trunk, builder) of one model a run trains
_Run = tuple[str, str, str, Any, Callable[[], Any]]


def _planned_runs(labels: Labels, config: TrainConfig, reference: Any) -> list[_Run]:
    """The two cascade stages, and the flat comparison when asked for."""
    from training.architecture import build_flat, build_stage1, build_stage2

    shape: dict[str, Any] = {
        "input_size": config.input_size,
        "width": config.width,
        "batch_norm": config.resolved_batch_norm,
    }
    n_models, n_skus = len(labels.models), len(labels.skus)
    runs: list[_Run] = [
        (
            "stage 1",
            f"training stage 1 (grayscale -> {n_models} models)",
            "model",
            reference,
            lambda: build_stage1(n_models, **shape),
        ),
        (
            "stage 2",
            f"training stage 2 (colour -> {n_skus} SKUs within the model)",
            "model+sku",
            reference,
            lambda: build_stage2(labels.membership, n_skus, **shape),
        ),
    ]
    if config.compare_flat:
        runs.append(
            (
                "flat",
                f"training the flat comparison (colour -> {n_skus} SKUs)",
                "sku",
                reference if config.flat_width == 1.0 else None,  # same start as the cascade
                lambda: build_flat(n_skus, **{**shape, "width": config.flat_width}),
            )
        )
    return runs


def _fit_runs(stages: _Stages, runs: list[_Run], precision: str) -> dict[str, Any]:
    """Each model fitted in `precision`, returned by key as a float32 copy."""
    from training.mixed_precision import float32_copy, policy

    trained: dict[str, Any] = {}
    for key, title, target, start, build in runs:
        seed_everything(stages.config.seed)  # each model starts the same whatever trained before
        with policy(precision):
            model = build()
            stages.fit(key, title, model, target, start)
        # evaluated, saved and served in float32: 16-bit compute was for training speed only
        trained[key] = float32_copy(model, build)
    return trained


def _evaluate_version(
    stages: _Stages, trained: dict[str, Any], version: str, precision: str, left_out: int
) -> tuple[dict[str, Any], TrainCounts]:
    """The version's metrics on the test split (with timings and throughput), and the training
    class sizes the majority baseline uses."""
    from training.cascade import Cascade
    from training.evaluate import evaluate, evaluate_flat
    from training.loading import load_arrays
    from training.train_counts import TrainCounts

    config, labels, parts = stages.config, stages.labels, stages.parts
    stage1, stage2, flat = trained["stage 1"], trained["stage 2"], trained.get("flat")
    clock = time.perf_counter()
    test_set = load_arrays(
        parts.test,
        labels,
        size=config.input_size,
        progress=stages.events.phase("evaluating on the test split", len(parts.test)),
    )
    train_counts = TrainCounts.of(parts.train, labels)  # the majority baseline's class sizes
    cascade = Cascade.from_keras(
        stage1,
        stage2,
        labels,
        version=version,
        input_size=config.input_size,
        train_counts=train_counts,
    )
    metrics = evaluate(cascade, test_set)
    metrics["parameters"] = int(stage1.count_params() + stage2.count_params())
    if flat is not None:
        metrics["flat"] = evaluate_flat(flat, test_set, labels, width=config.flat_width)
    # files the data check left out (--force), and any that failed to decode in training
    skipped = left_out + len(stages.source.unreadable | set(test_set.skipped))
    metrics["skipped_images"] = skipped
    metrics["split"] = {"train": len(parts.train), "val": len(parts.val), "test": len(parts.test)}
    stages.timings["evaluate"] = time.perf_counter() - clock
    metrics["timings_seconds"] = stages.timings
    metrics["training"] = {
        **stages.throughput,
        "precision": precision,
        "peak_rss_mib": peak_rss_mib(),
    }
    return metrics, train_counts


def _write_version(
    stages: _Stages,
    trained: dict[str, Any],
    version: str,
    precision: str,
    metrics: dict[str, Any],
    train_counts: TrainCounts,
    data_dir: Path,
) -> None:
    """The version's files; metrics.json last, as the registry takes it for completion."""
    from training.report import write_report

    folder, labels, config = stages.folder, stages.labels, stages.config
    stages.events.phase("writing the version")
    trained["stage 1"].save(folder / "stage1.keras")
    trained["stage 2"].save(folder / "stage2.keras")
    labels.save(folder / "labels.json")
    train_counts.save(folder, labels)
    # The dataset path lets later checks (e.g. int8 accuracy) rebuild the same test split.
    recorded = {
        **config.to_dict(),
        "trained_in": precision,
        "data_dir": str(data_dir.resolve()),
        "lineage": metrics["lineage"],
    }
    (folder / "config.json").write_text(json.dumps(recorded, indent=2) + "\n")
    write_report(
        folder,
        version=version,
        metrics=metrics,
        labels=labels,
        config=config.to_dict(),
        timings=stages.timings,
        skipped=metrics["skipped_images"],
    )
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    from training.open_world import calibrate

    # the open-world decision (sku, model or unknown) fitted on the validation photos
    metrics["open_world"] = calibrate(folder, data_dir, events=stages.events)
    # metrics.json last, whole: the registry treats a version as complete once it exists.
    from training.atomic_files import write_json_atomically

    write_json_atomically(folder / "metrics.json", metrics)


class _Stages:
    """Fits the stages of one run on streamed data, recording time and images per second."""

    def __init__(
        self,
        folder: Path,
        labels: Labels,
        parts: Any,
        config: TrainConfig,
        events: TrainingEvents,
        verbose: int,
        source: ImageSource,
    ) -> None:
        self.folder, self.labels, self.parts, self.config = folder, labels, parts, config
        self.events, self.verbose, self.source = events, verbose, source
        self.timings: dict[str, float] = {}
        self.throughput: dict[str, dict[str, float]] = {}

    def fit(self, key: str, title: str, model: Any, target: str, reference: Any) -> None:
        from training.fit import StopWhenNothingReadable, fit_stage
        from training.pipeline import fit_streams

        config, labels, parts = self.config, self.labels, self.parts
        steps = -(-len(parts.train) // config.batch_size)
        paths = {str(s.path) for s in parts.train}

        train, val = fit_streams(parts, labels, self.source, target=target, config=config)  # type: ignore[arg-type]

        clock = time.perf_counter()
        history = fit_stage(
            model,
            train,
            val,
            config=config,
            checkpoint=self.folder / "checkpoints" / f"{key.replace(' ', '')}.keras",
            verbose=self.verbose,
            reference=reference,
            on_batch=self.events.phase(title, config.epochs * steps),
            extra_callbacks=(StopWhenNothingReadable(paths, lambda: self.source.unreadable),),
        )
        if paths <= self.source.unreadable:
            raise DatasetError(f"none of the {len(parts.train)} training images could be read")
        seconds = time.perf_counter() - clock
        self.timings[key] = seconds
        seen = history["epochs"] * len(parts.train)  # training images; validation adds time
        self.throughput[key] = {
            "seconds": round(seconds, 1),
            "epochs": history["epochs"],
            "images_per_second": round(seen / seconds, 1),
        }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
