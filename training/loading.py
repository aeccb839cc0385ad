"""Decoding dataset images into arrays with the same decoder the workers use at serving time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from shared.errors import InvalidImage, UnsupportedMediaType
from shared.images import decode
from training.dataset import Sample
from training.labels import Labels

MAX_TRAINING_PIXELS = 50_000_000


@dataclass(frozen=True)
class ArraySet:
    """Decoded images with their model and SKU indices; unreadable files are counted, not kept."""

    images: np.ndarray  # (N, S, S, 3) uint8
    models: np.ndarray  # (N,) int32
    skus: np.ndarray  # (N,) int32
    skipped: tuple[str, ...]


def load_arrays(
    samples: Sequence[Sample],
    labels: Labels,
    *,
    size: int,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ArraySet:
    """Decode every sample (threads: Pillow releases the GIL while decoding)."""

    def one(sample: Sample) -> np.ndarray | None:
        try:
            return decode(sample.path.read_bytes(), size=size, max_pixels=MAX_TRAINING_PIXELS)
        except (InvalidImage, UnsupportedMediaType, OSError):
            return None
        finally:
            if progress is not None:
                progress(1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        decoded = list(pool.map(one, samples))
    kept = [(s, a) for s, a in zip(samples, decoded, strict=True) if a is not None]
    skipped = tuple(str(s.path) for s, a in zip(samples, decoded, strict=True) if a is None)
    images = np.stack([a for _, a in kept]) if kept else np.zeros((0, size, size, 3), np.uint8)
    return ArraySet(
        images=images,
        models=np.array([labels.model_index[s.model] for s, _ in kept], dtype=np.int32),
        skus=np.array([labels.sku_index[s.sku] for s, _ in kept], dtype=np.int32),
        skipped=skipped,
    )
