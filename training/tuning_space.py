"""The search space of `skuai tune`: learning rate, weight decay, epochs and patience, trunk
width and augmentation strength, each drawn around (and never beyond) the fixed settings."""

from __future__ import annotations

from typing import Any

from training.config import TrainConfig

LEARNING_RATE = (1e-4, 1e-2)
WEIGHT_DECAY = (1e-6, 1e-2)  # log scale; 0 (plain Adam) is the baseline trial's
AUGMENT_STRENGTH = (0.25, 1.5)
OCCLUSION = (0.0, 0.5)
MAX_PATIENCE = 6


def widths(base: TrainConfig) -> list[float]:
    """Trunk widths to try: the fixed one and narrower ones; a pretrained trunk keeps its width
    (the ImageNet weights fit only the full one)."""
    if base.pretrained:
        return [base.width]
    return sorted({base.width / 4, base.width / 2, base.width})


def suggest(trial: Any, base: TrainConfig) -> dict[str, Any]:
    """The trial's settings, drawn by Optuna; `--epochs` is the most a trial may run."""
    params: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", *LEARNING_RATE, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *WEIGHT_DECAY, log=True),
        "epochs": trial.suggest_int("epochs", max(1, base.epochs // 3), base.epochs),
        "patience": trial.suggest_int("patience", 1, max(1, min(MAX_PATIENCE, base.epochs))),
        "width": trial.suggest_categorical("width", widths(base)),
    }
    if base.augment:
        params["augment_strength"] = trial.suggest_float("augment_strength", *AUGMENT_STRENGTH)
        params["occlusion"] = trial.suggest_float("occlusion", *OCCLUSION)
    return params


def base_params(base: TrainConfig) -> dict[str, Any]:
    """The fixed settings as a trial's parameters: the study's first, untuned trial. Weight
    decay has no 0 on a log scale: its lower bound stands for it."""
    params: dict[str, Any] = {
        "learning_rate": min(max(base.learning_rate, LEARNING_RATE[0]), LEARNING_RATE[1]),
        "weight_decay": max(base.weight_decay, WEIGHT_DECAY[0]),
        "epochs": base.epochs,
        "patience": max(1, min(base.patience, MAX_PATIENCE, base.epochs)),
        "width": base.width,
    }
    if base.augment:
        params["augment_strength"] = min(max(base.augment_strength, 0.25), 1.5)
        params["occlusion"] = min(base.occlusion, OCCLUSION[1])
    return params
