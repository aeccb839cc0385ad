"""A training run is repeatable: the same seed on the same data gives the same weights and the
same test metrics; another seed gives other weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import TINY_CASCADE
from training.registry import Registry

# The parts of metrics.json that depend on the weights (less the speeds they hold).
REPEATABLE = ("stage1", "stage2_given_true_model", "end_to_end", "split")


def _train(catalog: Path, registry: Path, seed: int) -> Any:
    from training.config import TrainConfig
    from training.train import train

    # Augmentation on: its random layers, occlusion and degradations hold the most random state.
    config = TrainConfig(**{**TINY_CASCADE, "augment": True}, epochs=1, precision="fp32", seed=seed)
    return train(catalog, Registry(registry), config, activate=False)


def _weights(version: Path) -> list[np.ndarray]:
    import keras

    return [
        weight
        for name in ("stage1.keras", "stage2.keras")
        for weight in keras.models.load_model(version / name, compile=False).get_weights()
    ]


def _without_speeds(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if not key.endswith("per_second")}


def test_same_seed_gives_same_weights_and_metrics(tiny_catalog: Path, tmp_path: Path) -> None:
    from tensorflow.python.framework import config as tf_config

    first = _train(tiny_catalog, tmp_path / "registry", seed=1)
    second = _train(tiny_catalog, tmp_path / "registry", seed=1)
    other = _train(tiny_catalog, tmp_path / "registry", seed=2)

    a, b, c = (_weights(outcome.path) for outcome in (first, second, other))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    for key in REPEATABLE:
        assert _without_speeds(first.metrics[key]) == _without_speeds(second.metrics[key]), key
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # Training turns op determinism on for itself only; the process gets its setting back.
    assert not tf_config.is_op_determinism_enabled()
