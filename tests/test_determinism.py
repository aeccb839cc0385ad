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


def _initial_stage1_weights(seed: int) -> list[np.ndarray]:
    from training.architecture import build_stage1
    from training.determinism import seed_everything

    seed_everything(seed)
    shape = {"input_size": TINY_CASCADE["input_size"], "width": TINY_CASCADE["width"]}
    return build_stage1(3, **shape).get_weights()


def test_same_seed_gives_same_weights_and_metrics(tiny_catalog: Path, tmp_path: Path) -> None:
    from tensorflow.python.framework import config as tf_config

    first = _train(tiny_catalog, tmp_path / "registry", seed=1)
    second = _train(tiny_catalog, tmp_path / "registry", seed=1)

    a, b = (_weights(outcome.path) for outcome in (first, second))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    for key in REPEATABLE:
        assert _without_speeds(first.metrics[key]) == _without_speeds(second.metrics[key]), key
    # Not equal by doing nothing: training moved the weights away from where seed 1 starts them,
    # and another seed starts them elsewhere (a third training to show it costs 20 s).
    initial = _initial_stage1_weights(1)
    stage1 = a[: len(initial)]
    assert not all(np.array_equal(x, y) for x, y in zip(stage1, initial, strict=True))
    other = _initial_stage1_weights(2)
    assert not all(np.array_equal(x, y) for x, y in zip(initial, other, strict=True))
    assert all(
        np.array_equal(x, y) for x, y in zip(initial, _initial_stage1_weights(1), strict=True)
    )
    # Training turns op determinism on for itself only; the process gets its setting back.
    assert not tf_config.is_op_determinism_enabled()
