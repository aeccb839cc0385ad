"""What the embedding scores compare with (open_world.npz): unit-length centroids of training
photos' embeddings, a per-SKU sample of them for kNN, and stage 1's last layer; and the fit of
all that from a version's training photos (the only part that runs the cascade)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import ConfigError, DatasetError
from training.dataset import Sample

if TYPE_CHECKING:
    from training.cascade import Cascade

CENTROID_PHOTOS = 16  # training photos per SKU behind the centroids (cost: seed scale has 504 SKUs)
BANK_PHOTOS = 16  # of those, kept per SKU for the kNN methods
CHUNK = 256  # photos decoded and scored at a time (bounds memory at seed scale)


@dataclass(frozen=True)
class Bank:
    """Centroids, kNN sample and stage 1's last layer (its saved model ends in a softmax, energy
    needs the logits)."""

    stage1_kernel: np.ndarray  # (D1, models)
    stage1_bias: np.ndarray  # (models,)
    model_centroids: np.ndarray  # (models, D1)
    sku_centroids: np.ndarray  # (SKUs, D2)
    neighbours: np.ndarray  # (K, D2)
    neighbour_model: np.ndarray  # (K,) the model of each neighbour's SKU
    model_of_sku: np.ndarray  # (SKUs,)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> Bank:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


def centroid_samples(samples: Sequence[Sample], per_sku: int) -> list[Sample]:
    """Up to `per_sku` training photos of each SKU, spread over its photos (deterministic)."""
    by_sku: dict[tuple[str, str], list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: str(s.path)):
        by_sku.setdefault((sample.model, sample.sku), []).append(sample)
    chosen = []
    for photos in by_sku.values():
        step = max(1, len(photos) / per_sku)
        chosen += [photos[int(i * step)] for i in range(min(per_sku, len(photos)))]
    return chosen


def fit_bank(cascade: Cascade, folder: Path, samples: Sequence[Sample], progress: Any) -> Bank:
    """Centroids and the kNN bank from training photos, each stage-2 embedding taken with the
    photo's true model, and stage 1's last layer from the saved model."""
    import keras

    from training.loading import load_arrays

    labels = cascade.labels
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    models: list[np.ndarray] = []
    skus: list[np.ndarray] = []
    for start in range(0, len(samples), CHUNK):
        arrays = load_arrays(samples[start : start + CHUNK], labels, size=cascade.input_size)
        progress(len(samples[start : start + CHUNK]))
        if len(arrays.images) == 0:
            continue
        _, embedding1 = cascade.stage1(arrays.images)
        _, embedding2 = cascade.stage2(arrays.images, arrays.models)
        if embedding1 is None or embedding2 is None:
            raise ConfigError("calibration needs the float models' embeddings")
        first.append(embedding1)
        second.append(embedding2)
        models.append(arrays.models)
        skus.append(arrays.skus)
    if not first:
        raise DatasetError(f"none of the training photos of {folder.name} could be read")
    e1, e2 = np.concatenate(first), np.concatenate(second)
    m, s = np.concatenate(models), np.concatenate(skus)
    model_centroids = np.zeros((len(labels.models), e1.shape[1]), np.float32)
    sku_centroids = np.zeros((len(labels.skus), e2.shape[1]), np.float32)
    for i in np.unique(m):
        model_centroids[i] = e1[m == i].mean(axis=0)
    for i in np.unique(s):
        sku_centroids[i] = e2[s == i].mean(axis=0)
    keep = np.concatenate([np.flatnonzero(s == i)[:BANK_PHOTOS] for i in np.unique(s)])
    import training.architecture  # noqa: F401 - registers the custom layers

    stage1 = keras.saving.load_model(folder / "stage1.keras", compile=False)
    kernel, bias = stage1.get_layer("model").get_weights()
    return Bank(
        stage1_kernel=np.asarray(kernel, np.float64),
        stage1_bias=np.asarray(bias, np.float64),
        model_centroids=unit(model_centroids),
        sku_centroids=unit(sku_centroids),
        neighbours=unit(e2[keep]),
        neighbour_model=np.asarray(labels.model_of_sku)[s[keep]],
        model_of_sku=np.asarray(labels.model_of_sku),
    )
