"""Fitting one stage: the learning-rate schedule and early stopping on the validation split,
and checkpoints of the best epoch."""

from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.architecture import build_stage1
from training.config import TrainConfig
from training.fit import fit_stage

BATCHES = 4
EPOCHS = 6


def _noise(seed: int) -> tf.data.Dataset:
    """(inputs, target, weight) batches as training.pipeline makes them, with targets that are
    noise: a model can fit the training batches but its validation loss soon stops improving."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(BATCHES * 16, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 2, len(x), dtype="int32")
    return tf.data.Dataset.from_tensor_slices((x, y, np.ones(len(x), "float32"))).batch(16)


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_stage1(2, input_size=32, width=1 / 16, batch_norm=True)


class RateRecorder(keras.callbacks.Callback):
    """The optimizer's learning rate at the start of each epoch, and after the last."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.rates.append(float(self.model.optimizer.learning_rate))

    def on_train_end(self, logs: dict | None = None) -> None:
        self.rates.append(float(self.model.optimizer.learning_rate))


def _fit(tmp_path: Path, *, patience: int) -> tuple[keras.Model, dict, list]:
    model, recorder = _model(), RateRecorder()
    history = fit_stage(
        model,
        _noise(0),
        _noise(1),
        config=TrainConfig(epochs=EPOCHS, patience=patience, weights="none"),
        checkpoint=tmp_path / "stage.keras",
        verbose=0,
        extra_callbacks=(recorder,),
    )
    return model, history, recorder.rates


def test_the_rate_is_cut_when_validation_stalls(tmp_path: Path) -> None:
    _, history, rates = _fit(tmp_path, patience=2)  # the rate's patience is half of that
    assert rates[0] == pytest.approx(1e-3)
    ratios = [b / a for a, b in itertools.pairwise(rates)]
    assert all(r == pytest.approx(1) or r == pytest.approx(0.3) for r in ratios), rates
    assert any(r == pytest.approx(0.3) for r in ratios), rates
    assert history["learning_rate"][-1] < 1e-3


def test_early_stopping_keeps_the_best_epoch_and_checkpoints_it(tmp_path: Path) -> None:
    model, history, _ = _fit(tmp_path, patience=1)
    assert history["epochs"] < EPOCHS, history["val_loss"]
    best = min(history["val_loss"])
    val_loss = model.evaluate(_noise(1), verbose=0)[0]
    assert val_loss == pytest.approx(best, rel=1e-4)  # restored, not the last epoch's weights
    saved = keras.models.load_model(tmp_path / "stage.keras")
    assert saved.evaluate(_noise(1), verbose=0)[0] == pytest.approx(best, rel=1e-4)
