"""How many training images each model and SKU had: a version's class priors, saved with it
as `train_counts.json` (the majority-class baseline of its evaluations comes from them)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.dataset import Sample
from training.labels import Labels

FILE = "train_counts.json"


@dataclass(frozen=True)
class TrainCounts:
    """Training images per model and per SKU, in the label indices' order."""

    models: np.ndarray
    skus: np.ndarray

    @classmethod
    def of(cls, samples: Iterable[Sample], labels: Labels) -> TrainCounts:
        """Count the samples of a (training) split."""
        models = np.zeros(len(labels.models), np.int64)
        skus = np.zeros(len(labels.skus), np.int64)
        for sample in samples:
            models[labels.model_index[sample.model]] += 1
            skus[labels.sku_index[sample.sku]] += 1
        return cls(models=models, skus=skus)

    def save(self, folder: Path, labels: Labels) -> None:
        """Write `train_counts.json`, keyed by label so it reads without the indices."""
        document = {
            "models": dict(zip(labels.models, self.models.tolist(), strict=True)),
            "skus": dict(zip(labels.skus, self.skus.tolist(), strict=True)),
        }
        (folder / FILE).write_text(json.dumps(document, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, labels: Labels) -> TrainCounts | None:
        """The counts a version folder holds, or None for a version written before them."""
        try:
            document = json.loads((folder / FILE).read_text())
            return cls(
                models=np.array([int(document["models"][m]) for m in labels.models]),
                skus=np.array([int(document["skus"][s]) for s in labels.skus]),
            )
        except FileNotFoundError:
            return None
