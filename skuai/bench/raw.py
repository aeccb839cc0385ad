"""The raw scenario: the cascade called in-process on pre-decoded tensors, at several batch sizes
(the best one is the ceiling the service is measured against)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

BATCH_SIZES = (1, 8, 32, 64)
REPEATS = 3


def raw_throughput(
    cascade: Any, images: np.ndarray, batch_sizes: tuple[int, ...] = BATCH_SIZES
) -> dict[str, Any]:
    """Images per second of `cascade.predict` per batch size (median of REPEATS passes)."""
    by_batch: dict[str, float] = {}
    for size in batch_sizes:
        if size > len(images):
            continue
        batches = [images[i : i + size] for i in range(0, len(images) - size + 1, size)]
        cascade.predict(batches[0])  # warm-up: first calls allocate
        rates = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            for batch in batches:
                cascade.predict(batch)
            rates.append(len(batches) * size / (time.perf_counter() - began))
        by_batch[str(size)] = round(statistics.median(rates), 2)
    best = max(by_batch, key=lambda k: by_batch[k])
    return {"images_per_second": by_batch[best], "best_batch": int(best), "by_batch": by_batch}
