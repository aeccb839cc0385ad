"""`skuai train DATA --from VERSION`: a new version that adds SKUs (and models) to VERSION's
catalog in about a tenth of a full train's time, starting from VERSION's weights and training
only what must change (docs/training.md, "Incremental versions", has the measurements).

- The trunks stay frozen. Both stages are rebuilt for the new labels with the weights copied by
  label (training.relabel).
- Stage 1's head (`fc` and the softmax) is fine-tuned on cached trunk features of a capped
  sample of the known SKUs' photos and every new SKU's photos, augmented (training.head_fit):
  a new colourway of a known model looks new in grayscale too. When the change is only SKUs
  removed, stage 1 is VERSION's file.
- For each model that gained SKUs, the new SKUs' `sku_logits` columns are fitted on its
  `sku_hidden` features (augmented copies of the new SKUs' photos added), the known SKUs'
  columns held fixed. Every other model's columns, FiLM rows and embedding are copied, so its
  stage-2 answers are exactly VERSION's. A new model's FiLM and embedding rows start at the mean
  of the known rows.
- Photos VERSION had keep its split (training.inherited_split); it is evaluated on its test split
  like a full train, with the same metrics.json, plus `incremental` and `lineage`."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.atomic_files import write_json_atomically
from training.data_check import DataReport, check_dataset, files_to_check
from training.dataset import Sample, Split
from training.determinism import deterministic_ops, seed_everything
from training.features import augmented_copies, stage_features
from training.head_fit import fit_head
from training.inherited_split import inherited_split
from training.labels import Labels
from training.lineage import CatalogChange, check_change, compare, labels_of_report, lineage
from training.registry import Registry
from training.split_record import write_split
from training.train import QuietEvents, TrainingEvents, TrainOutcome, peak_rss_mib

AUGMENTED_COPIES = 4  # augmented copies of each new photo the column fits see
KNOWN_MODEL_CAP = 200  # training photos per known model that stage 1's refit sees


def train_from(
    data_dir: Path,
    registry: Registry,
    parent: str,
    *,
    allow_removals: bool = False,
    activate: bool = True,
    events: TrainingEvents | None = None,
    check: DataReport | None = None,
    force: bool = False,
    seed: int | None = None,
) -> TrainOutcome:
    """Check `data_dir`, compare its catalog with `parent`'s (removals refused unless
    `allow_removals`), and register the incremental version. `check`: a report already made
    of `data_dir` at the parent's input size; `seed`: the parent's unless given."""
    started = time.perf_counter()
    events = events or QuietEvents()
    parent_folder = registry.path(parent)
    parent_config = json.loads((parent_folder / "config.json").read_text())
    seed = int(parent_config.get("seed", 0)) if seed is None else seed
    if check is None:
        progress = events.phase("checking the dataset", files_to_check(data_dir))
        check = check_dataset(
            data_dir, input_size=int(parent_config["input_size"]), progress=progress
        )
    parts, record = inherited_split(check, parent_folder, seed=seed, force=force)
    old_labels, labels = registry.labels(parent), labels_of_report(check)
    change = compare(old_labels, labels)
    check_change(change, parent, allow_removals=allow_removals)
    run = _Run(parent, parent_folder, parent_config, old_labels, labels, change, parts, seed)
    run.events, run.timings["check and split"] = events, time.perf_counter() - started
    version, folder = registry.new_version()
    try:
        write_split(folder, record)
        with deterministic_ops():
            stage1, stage2 = run.fit()
            metrics = run.evaluate(stage1, stage2, version, left_out=len(record["left_out"]))
            metrics["lineage"] = lineage(check, parent=parent, change=change)
            run.write(folder, version, stage1, stage2, metrics, data_dir, started=started)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete version must not linger
        raise
    should_activate = activate or registry.active() is None
    if should_activate:
        registry.activate(version)
    return TrainOutcome(version=version, path=folder, metrics=metrics, activated=should_activate)


class _Run:
    """One incremental run: the parent, the new labels and split, and the phases' timings."""

    def __init__(
        self,
        parent: str,
        parent_folder: Path,
        parent_config: dict[str, Any],
        old_labels: Labels,
        labels: Labels,
        change: CatalogChange,
        parts: Split,
        seed: int,
    ) -> None:
        self.parent, self.parent_folder, self.parent_config = parent, parent_folder, parent_config
        self.old_labels, self.labels, self.change, self.parts = old_labels, labels, change, parts
        self.seed = seed
        self.size = int(parent_config["input_size"])
        self.events: TrainingEvents = QuietEvents()
        self.timings: dict[str, float] = {}
        self.unreadable: set[str] = set()
        self.train_counts: Any = None  # the training split's class sizes, once evaluated

    def fit(self) -> tuple[Any, Any]:
        """Both stages for the new labels, with what changed fitted."""
        import keras

        import training.architecture  # noqa: F401 - registers the custom layers
        from training.relabel import relabel_stage1, relabel_stage2

        clock = time.perf_counter()
        self.events.phase(f"loading {self.parent}")
        old1, old2 = (
            keras.saving.load_model(self.parent_folder / name, compile=False)
            for name in ("stage1.keras", "stage2.keras")
        )
        shape: dict[str, Any] = {
            "input_size": self.size,
            "width": float(self.parent_config["width"]),
            "batch_norm": bool(self.parent_config.get("batch_norm", False)),
        }
        stage2 = relabel_stage2(old2, self.old_labels, self.labels, shape)
        stage1 = relabel_stage1(old1, self.old_labels, self.labels, shape)
        self.timings["load and relabel"] = time.perf_counter() - clock
        if self.change.added_skus:
            clock = time.perf_counter()
            self._refit_stage1(stage1)
            self.timings["stage 1 head"] = time.perf_counter() - clock
        clock = time.perf_counter()
        gained = sorted({self._model_of(sku) for sku in self.change.added_skus})
        advance = self.events.phase(f"fitting new SKUs of {len(gained)} models", len(gained))
        for model in gained:
            self._fit_new_skus(stage2, model)
            advance(1)
        self.timings["stage 2 (new SKUs)"] = time.perf_counter() - clock
        return stage1, stage2

    def _model_of(self, sku: str) -> str:
        return next(m for m, skus in self.labels.skus_by_model.items() if sku in skus)

    def _refit_stage1(self, stage1: Any) -> None:
        """Stage 1's head (`fc` and the softmax) refitted on cached trunk features (`gap`): a
        new colourway of a known model looks different in grayscale too, and the parent's stage
        1 routed only 77% of them to their model (docs/training.md, "Incremental versions").
        It sees up to KNOWN_MODEL_CAP photos of each model's known SKUs (and one augmented copy
        of each) and every new SKU's photos (with AUGMENTED_COPIES copies), and starts from the
        parent's head (a new model's column at zero)."""
        import keras

        rng = np.random.default_rng(self.seed)
        known: list[Sample] = []
        new_photos: list[Sample] = []
        added = set(self.change.added_skus)
        for photos in _by_model(self.parts.train).values():
            new_photos += [p for p in photos if p.sku in added]
            old = [p for p in photos if p.sku not in added]
            if len(old) > KNOWN_MODEL_CAP:
                old = [old[i] for i in sorted(rng.choice(len(old), KNOWN_MODEL_CAP, replace=False))]
            known += old
        self.events.phase(f"stage 1: {len(known)} known and {len(new_photos)} new photos")
        gap = keras.Model(stage1.input, stage1.get_layer("gap").output)
        images, targets = self._images(known, "model", augment_from=0, copies=1)
        fresh, fresh_targets = self._images(new_photos, "model", augment_from=0)
        features = stage_features(gap, np.concatenate([images, fresh]))
        targets = np.concatenate([targets, fresh_targets])
        seed_everything(self.seed)
        fit_head(stage1, features, targets, len(self.labels.models), seed=self.seed)

    def _fit_new_skus(self, stage2: Any, model: str) -> None:
        """The `sku_logits` columns of `model`'s new SKUs, fitted on `sku_hidden` features of
        its training photos (the new SKUs' with augmented copies), its known SKUs' fixed."""
        import keras

        from training.head_fit import Columns, fit_columns

        labels, known_skus = self.labels, set(self.old_labels.skus)
        skus = labels.skus_by_model[model]
        known = [labels.sku_index[s] for s in skus if s in known_skus]
        new = [labels.sku_index[s] for s in skus if s not in known_skus]
        photos = _by_model(self.parts.train)[model]
        old = [p for p in photos if p.sku in known_skus]
        images, targets = self._images(
            old + [p for p in photos if p.sku not in known_skus], "sku", augment_from=len(old)
        )
        hidden = keras.Model(stage2.input, stage2.get_layer("sku_hidden").output)
        features = stage_features(hidden, images, labels.model_index[model])
        local = {g: i for i, g in enumerate(known + new)}
        layer = stage2.get_layer("sku_logits")
        kernel, bias = layer.get_weights()
        fixed = Columns(kernel[:, known], bias[known]) if known else None
        seed_everything(self.seed)
        fitted = fit_columns(
            features,
            np.array([local[int(t)] for t in targets]),
            Columns(kernel[:, new], bias[new]),
            fixed=fixed,
        )
        kernel[:, new], bias[new] = fitted.kernel, fitted.bias
        layer.set_weights([kernel, bias])

    def _images(
        self,
        samples: list[Sample],
        target: str,
        *,
        augment_from: int,
        copies: int = AUGMENTED_COPIES,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decoded `samples` with their model or SKU indices, then `copies` augmented copies
        of `samples[augment_from:]` (the training pipeline's augmentation)."""
        from training.loading import load_arrays

        loaded = load_arrays(samples, self.labels, size=self.size)
        self.unreadable.update(loaded.skipped)
        targets = loaded.models if target == "model" else loaded.skus
        kept = {str(s.path) for s in samples} - set(loaded.skipped)
        first_new = sum(1 for s in samples[:augment_from] if str(s.path) in kept)
        augmented = augmented_copies(loaded.images[first_new:], copies, self.seed)
        images = np.concatenate([loaded.images.astype(np.float32), augmented])
        return images, np.concatenate([targets, np.tile(targets[first_new:], copies)])

    def evaluate(self, stage1: Any, stage2: Any, version: str, *, left_out: int) -> dict[str, Any]:
        """The metrics a full train records, on the test split, plus `incremental`."""
        from training.cascade import Cascade
        from training.evaluate import evaluate
        from training.loading import load_arrays
        from training.train_counts import TrainCounts

        clock = time.perf_counter()
        test = self.parts.test
        test_set = load_arrays(
            test,
            self.labels,
            size=self.size,
            progress=self.events.phase("evaluating on the test split", len(test)),
        )
        self.train_counts = TrainCounts.of(self.parts.train, self.labels)
        cascade = Cascade.from_keras(
            stage1,
            stage2,
            self.labels,
            version=version,
            input_size=self.size,
            train_counts=self.train_counts,
        )
        metrics = evaluate(cascade, test_set)
        metrics["parameters"] = int(stage1.count_params() + stage2.count_params())
        metrics["skipped_images"] = left_out + len(self.unreadable | set(test_set.skipped))
        metrics["split"] = {
            name: len(getattr(self.parts, name)) for name in ("train", "val", "test")
        }
        self.timings["evaluate"] = time.perf_counter() - clock
        metrics["timings_seconds"] = self.timings
        metrics["training"] = {"precision": "fp32", "peak_rss_mib": peak_rss_mib()}
        added = set(self.change.added_skus)
        metrics["incremental"] = {
            "from": self.parent,
            "new_sku_top1": top1_of(metrics, lambda sku: sku in added),
            "known_sku_top1": top1_of(metrics, lambda sku: sku not in added),
        }
        return metrics

    def write(
        self,
        folder: Path,
        version: str,
        stage1: Any,
        stage2: Any,
        metrics: dict[str, Any],
        data_dir: Path,
        *,
        started: float,
    ) -> None:
        """The version's files, as a full train writes them; metrics.json last (the registry
        takes a version as complete once it exists)."""
        from training.report import write_report

        self.events.phase("writing the version")
        if not self.change.added_skus and self.old_labels.models == self.labels.models:
            shutil.copyfile(self.parent_folder / "stage1.keras", folder / "stage1.keras")
        else:
            stage1.save(folder / "stage1.keras")
        stage2.save(folder / "stage2.keras")
        self.labels.save(folder / "labels.json")
        self.train_counts.save(folder, self.labels)
        config = {
            **self.parent_config,
            "seed": self.seed,
            "trained_in": "fp32",
            "data_dir": str(data_dir.resolve()),
            "lineage": metrics["lineage"],
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        write_report(
            folder,
            version=version,
            metrics=metrics,
            labels=self.labels,
            config=config,
            timings=self.timings,
            skipped=metrics["skipped_images"],
        )
        from training.open_world import calibrate

        # the version's own open-world thresholds (sku, model or unknown), as a full train fits
        clock = time.perf_counter()
        metrics["open_world"] = calibrate(folder, data_dir, events=self.events)
        self.timings["open-world calibration"] = time.perf_counter() - clock
        metrics["incremental"]["seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomically(folder / "metrics.json", metrics)


def top1_of(metrics: dict[str, Any], chosen: Callable[[str], bool]) -> float | None:
    """End-to-end SKU top-1 on the test photos of the SKUs `chosen` accepts (None: none)."""
    rows = [v for k, v in metrics["end_to_end"]["per_sku"].items() if chosen(k) and v["support"]]
    support = sum(v["support"] for v in rows)
    if not support:
        return None
    return sum((v["recall"] or 0.0) * v["support"] for v in rows) / support


def _by_model(samples: tuple[Sample, ...]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.model, []).append(sample)
    return grouped
