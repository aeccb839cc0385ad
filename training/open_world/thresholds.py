"""The thresholds of a method, fitted on the scores of correctly classified validation photos so
that at most `budget` of them lose their "sku" decision."""

from __future__ import annotations

import math

import numpy as np


def photos_needed(budget: float, share: float) -> int | None:
    """The fewest fitting photos for which a threshold spending `share` of `budget` lets at least
    one of them fall below it: ceil(1 / (budget x share)). Fewer, and the threshold would sit on
    the lowest score, a quantile far above the budget. None: that threshold spends nothing."""
    spent = budget * share
    return None if spent <= 0 else math.ceil(1 / spent - 1e-9)


def fit_thresholds(
    first: np.ndarray, second: np.ndarray, budget: float, split: float
) -> dict[str, float | None]:
    """Thresholds over the scores of correctly classified photos such that at most
    floor(budget x n) of them fall below one: stage 1 takes floor(budget x split x n) (values
    strictly below the threshold, so ties only lose fewer), stage 2 the rest among the photos
    stage 1 kept. None never flags: for a stage whose share of the budget is under one photo
    (fewer than `photos_needed` photos) or whose threshold is not finite."""
    n = len(first)
    thresholds: dict[str, float | None] = {"unknown": None, "model": None}
    kept = np.ones(n, dtype=bool)
    needed = photos_needed(budget, split)
    if needed is not None and n >= needed:
        t1 = float(np.sort(first)[math.floor(budget * split * n + 1e-9)])
        thresholds["unknown"] = _finite(t1)
        kept = first >= t1
    needed = photos_needed(budget, 1 - split)
    if needed is not None and n >= needed:
        # floor(budget n) - lost >= floor(budget (1 - split) n) >= 1, and < the photos kept
        spend = math.floor(budget * n + 1e-9) - (n - int(kept.sum()))
        thresholds["model"] = _finite(float(np.sort(second[kept])[spend]))
    return thresholds


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
