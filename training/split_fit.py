"""Fitting a run's models (both cascade stages, and the flat comparison when asked for) on a
given split, without writing a version: what `skuai tune` scores on the validation split and
`--kfold` evaluates on each test fold. `skuai train` keeps its own path (training/train.py), which
also records, calibrates and registers what it fits."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.errors import DatasetError
from training.config import TrainConfig
from training.dataset import Split
from training.determinism import seed_everything
from training.labels import Labels

# The models of a run, by key: "stage 1", "stage 2", and "flat" with compare_flat.
Trained = dict[str, Any]
# key of the model being fitted -> extra Keras callbacks for its fit (e.g. a pruner's)
CallbacksFor = Callable[[str], tuple[Any, ...]]


def fit_split(
    labels: Labels,
    parts: Split,
    config: TrainConfig,
    *,
    callbacks_for: CallbacksFor | None = None,
) -> Trained:
    """Fit every model of the run on `parts.train`, early-stopped on `parts.val`; returned in
    float32, as training.train saves them."""
    import keras

    from training.mixed_precision import float32_copy, policy, resolve
    from training.pipeline import ImageSource
    from training.train import _planned_runs  # the one list of what a run fits
    from training.weights import load_reference

    precision = resolve(config.precision)
    reference = (
        load_reference(config.weights, input_size=config.input_size) if config.pretrained else None
    )
    source = ImageSource(config.input_size)
    trained: Trained = {}
    with tempfile.TemporaryDirectory(prefix="skuai-fit-") as scratch:
        for key, _title, target, start, build in _planned_runs(labels, config, reference):
            keras.backend.clear_session()  # a long study must not pile up graphs
            seed_everything(config.seed)
            with policy(precision):
                model = build()
                extra = callbacks_for(key) if callbacks_for else ()
                _fit_one(model, labels, parts, config, source, target, start, extra, scratch)
            trained[key] = float32_copy(model, build)
    if {str(s.path) for s in parts.train} <= source.unreadable:
        raise DatasetError(f"none of the {len(parts.train)} training images could be read")
    return trained


def _fit_one(
    model: Any,
    labels: Labels,
    parts: Split,
    config: TrainConfig,
    source: Any,
    target: str,
    reference: Any,
    extra: tuple[Any, ...],
    scratch: str,
) -> None:
    """One model on the streamed train split, validated on the val split."""
    from training.fit import fit_stage
    from training.pipeline import fit_streams

    train, val = fit_streams(parts, labels, source, target=target, config=config)  # type: ignore[arg-type]
    fit_stage(
        model,
        train,
        val,
        config=config,
        checkpoint=Path(scratch) / f"{target.replace('+', '_')}.keras",
        verbose=0,
        reference=reference,
        extra_callbacks=extra,
    )


def cascade_of(trained: Trained, labels: Labels, config: TrainConfig, name: str) -> Any:
    """The fitted stages as a Cascade (no open-world decision: every answer is a SKU)."""
    from training.cascade import Cascade

    return Cascade.from_keras(
        trained["stage 1"],
        trained["stage 2"],
        labels,
        version=name,
        input_size=config.input_size,
    )
