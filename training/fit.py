"""Fitting one cascade stage: tf.data pipeline with augmentation, class weights, early stopping,
a learning-rate schedule on the validation split, checkpoints, and the frozen-then-fine-tune
recipe for pretrained trunks."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.config import TrainConfig
from training.weights import copy_trunk_weights, set_trunk_trainable

AUTOTUNE = tf.data.AUTOTUNE
# Keras warns that shuffle=True is ignored for tf.data input; our datasets shuffle themselves.
warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed", category=UserWarning)


def augmenter(seed: int) -> keras.Sequential:
    """Photo-like variation applied on the fly to training batches only."""
    return keras.Sequential(
        [
            layers_random("RandomFlip", "horizontal", seed=seed),
            layers_random("RandomRotation", 0.03, fill_mode="nearest", seed=seed + 1),
            layers_random("RandomZoom", (-0.1, 0.15), fill_mode="nearest", seed=seed + 2),
            layers_random("RandomTranslation", 0.06, 0.06, fill_mode="nearest", seed=seed + 3),
            layers_random("RandomContrast", 0.2, seed=seed + 4),
            layers_random("RandomBrightness", 0.15, value_range=(0, 255), seed=seed + 5),
        ],
        name="augment",
    )


def layers_random(name: str, *args: Any, **kwargs: Any) -> keras.layers.Layer:
    """A Keras random preprocessing layer by name (keeps the list above readable)."""
    return getattr(keras.layers, name)(*args, **kwargs)


def make_dataset(
    inputs: dict[str, np.ndarray] | np.ndarray,
    targets: np.ndarray,
    *,
    config: TrainConfig,
    training: bool,
) -> tf.data.Dataset:
    """Batches of (inputs, targets), shuffled and augmented when training, always prefetched."""
    data = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if training:
        data = data.shuffle(
            min(len(targets), 10_000), seed=config.seed, reshuffle_each_iteration=True
        )
    data = data.batch(config.batch_size)
    if training and config.augment:
        augment = augmenter(config.seed)

        def apply(x: Any, y: Any) -> Any:
            if isinstance(x, dict):
                return {**x, "image": augment(tf.cast(x["image"], tf.float32), training=True)}, y
            return augment(tf.cast(x, tf.float32), training=True), y

        data = data.map(apply, num_parallel_calls=AUTOTUNE)
    return data.prefetch(AUTOTUNE)


def class_weights(targets: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * count): rare classes count as much as common ones."""
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return {i: float(w) for i, w in enumerate(weights)}


class EpochProgress(keras.callbacks.Callback):
    """Advances a progress bar once per finished epoch."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        super().__init__()
        self.advance = advance

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.advance(1)


def fit_stage(
    model: keras.Model,
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    *,
    weights: dict[int, float],
    config: TrainConfig,
    checkpoint: Path,
    verbose: int,
    reference: Any = None,
    on_epoch: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Train one stage; with a `reference` trunk, first the head on a frozen base, then all."""
    if reference is not None:
        copy_trunk_weights(reference, model)
        head_epochs = max(1, config.epochs // 3)
        phases = [
            (head_epochs, config.learning_rate, False),
            (config.epochs - head_epochs, config.fine_tune_learning_rate, True),
        ]
    else:
        phases = [(config.epochs, config.learning_rate, True)]
    history: dict[str, list[float]] = {}
    extra = [EpochProgress(on_epoch)] if on_epoch is not None else []
    for epochs, learning_rate, trunk_trainable in phases:
        if epochs < 1:
            continue
        set_trunk_trainable(model, trunk_trainable)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        result = model.fit(
            train,
            validation_data=val,
            epochs=epochs,
            class_weight=weights,
            callbacks=[*_callbacks(config, checkpoint, has_val=val is not None), *extra],
            verbose=verbose,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
    return history


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
