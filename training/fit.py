"""Fitting one stage: class weights, early stopping and a learning-rate schedule on the validation
split, checkpoints, per-batch progress, and the frozen-then-fine-tune recipe for pretrained
trunks. The data comes from training.pipeline."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.config import BALANCE_POWERS, TrainConfig
from training.weights import copy_trunk_weights, set_trunk_trainable

# Keras warns that shuffle=True is ignored for tf.data input; our datasets shuffle themselves.
warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed", category=UserWarning)


def class_weights(targets: np.ndarray, num_classes: int, power: float = 1.0) -> dict[int, float]:
    """Weights proportional to count ** -power, scaled so the images' weights sum to n: power 1
    is balanced, n / (k * count) (rare classes count as much as common ones); 0.5 tempers it."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = (
        counts[present] ** -power * counts.sum() / np.sum(counts[present] ** (1 - power))
    )
    return {i: float(w) for i, w in enumerate(weights)}


def balance_weights(targets: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """The class weights of a `TrainConfig.balance` mode, or None when it weights nothing."""
    power = BALANCE_POWERS[mode]
    return class_weights(targets, num_classes, power) if power else None


class BatchProgress(keras.callbacks.Callback):
    """Advances a progress bar once per training batch, and counts the epochs run."""

    def __init__(self, advance: Callable[[int], None] | None) -> None:
        super().__init__()
        self.advance = advance
        self.epochs = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.advance is not None:
            self.advance(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs += 1


def fit_stage(
    model: keras.Model,
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    *,
    config: TrainConfig,
    checkpoint: Path,
    verbose: int,
    reference: Any = None,
    on_batch: Callable[[int], None] | None = None,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> dict[str, Any]:
    """Train one stage on (inputs, target, sample weight) batches (training.pipeline); with a
    `reference` trunk, first the head on a frozen base, then all.
    Returns the Keras history plus `epochs`, the number of epochs actually run."""
    if reference is not None:
        copy_trunk_weights(reference, model)
        head_epochs = max(1, config.epochs // 3)
        phases = [
            (head_epochs, config.learning_rate, False),
            (config.epochs - head_epochs, config.fine_tune_learning_rate, True),
        ]
    else:
        phases = [(config.epochs, config.learning_rate, True)]
    history: dict[str, Any] = {}
    progress = BatchProgress(on_batch)
    for epochs, learning_rate, trunk_trainable in phases:
        if epochs < 1:
            continue
        set_trunk_trainable(model, trunk_trainable)
        model.compile(
            optimizer=_optimizer(config, learning_rate),
            loss="sparse_categorical_crossentropy",
            weighted_metrics=["accuracy"],
        )
        result = model.fit(
            train,
            validation_data=val,
            epochs=epochs,
            callbacks=[
                *_callbacks(config, checkpoint, has_val=val is not None),
                progress,
                *extra_callbacks,
            ],
            verbose=verbose,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
    history["epochs"] = progress.epochs
    return history


def _optimizer(config: TrainConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, or AdamW (decoupled weight decay) when the config asks for weight decay."""
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate)


class StopWhenNothingReadable(keras.callbacks.Callback):
    """Ends training after the first epoch if not one training file could be decoded (the
    caller then reports it), instead of fitting every epoch on nothing."""

    def __init__(self, paths: set[str], unreadable: Callable[[], frozenset[str]]) -> None:
        super().__init__()
        self.paths = paths
        self.unreadable = unreadable

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.paths and self.paths <= self.unreadable():
            self.model.stop_training = True


def _callbacks(config: TrainConfig, checkpoint: Path, *, has_val: bool) -> list[Any]:
    """Early stopping and a learning-rate schedule on the validation split, and checkpoints."""
    monitor = "val_loss" if has_val else "loss"
    return [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=0.3, patience=max(1, config.patience // 2), min_lr=1e-6
        ),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, save_best_only=True),
    ]
