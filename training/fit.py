"""Fitting one cascade stage: tf.data pipeline with augmentation, class weights, early stopping,
a learning-rate schedule on the validation split, checkpoints, and the frozen-then-fine-tune
recipe for pretrained trunks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.config import TrainConfig
from training.weights import copy_trunk_weights, set_trunk_trainable

AUTOTUNE = tf.data.AUTOTUNE


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
) -> dict[str, list[float]]:
    """Train one stage; with a `reference` trunk, first the head on a frozen base, then all."""
    history: dict[str, list[float]] = {}
    epochs = config.epochs
    if reference is not None:
        copy_trunk_weights(reference, model)
        set_trunk_trainable(model, False)
        head_epochs = max(1, epochs // 3)
        _merge(
            history,
            _fit(
                model,
                train,
                val,
                weights,
                config,
                checkpoint,
                verbose,
                epochs=head_epochs,
                learning_rate=config.learning_rate,
            ),
        )
        set_trunk_trainable(model, True)
        epochs -= head_epochs
        learning_rate = config.fine_tune_learning_rate
    else:
        learning_rate = config.learning_rate
    if epochs > 0:
        _merge(
            history,
            _fit(
                model,
                train,
                val,
                weights,
                config,
                checkpoint,
                verbose,
                epochs=epochs,
                learning_rate=learning_rate,
            ),
        )
    return history


def _fit(
    model: keras.Model,
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    weights: dict[int, float],
    config: TrainConfig,
    checkpoint: Path,
    verbose: int,
    *,
    epochs: int,
    learning_rate: float,
) -> dict[str, list[float]]:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    monitor = "val_loss" if val is not None else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=0.3, patience=max(1, config.patience // 2), min_lr=1e-6
        ),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, save_best_only=True),
    ]
    result = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        class_weight=weights,
        callbacks=callbacks,
        verbose=verbose,
    )
    return {key: [float(v) for v in values] for key, values in result.history.items()}


def _merge(history: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for key, values in more.items():
        history.setdefault(key, []).extend(values)
