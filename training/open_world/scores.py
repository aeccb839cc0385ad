"""The open-world scores of answers (higher: more like what the version was trained on), the
z-scoring that combines energy and cosine, and the decision codes the thresholds give."""

from __future__ import annotations

import numpy as np

from shared.errors import ConfigError
from training.open_world.bank import Bank, unit
from training.open_world.evidence import Evidence
from training.open_world.methods import MAX_K, Method

# The combination's scores, z-scored on the validation photos before they are averaged.
COMBINED = ("energy", "cos")
# The smallest standard deviation a z-score divides by, absolute and relative to the mean: one
# validation photo, or identical scores, would otherwise divide by ~0 and turn noise into
# z-scores of thousands.
STD_FLOOR = 1e-3


def raw_scores(evidence: Evidence, bank: Bank, *, neighbours: bool = True) -> dict[str, np.ndarray]:
    """Every score the evidence allows, before the z-scoring of the combination."""
    scores = {"msp": evidence.p_model.max(axis=1), "joint": evidence.confidence}
    if evidence.stage1 is not None:
        logits = evidence.stage1.astype(np.float64) @ bank.stage1_kernel + bank.stage1_bias
        top = logits.max(axis=1)
        scores["energy"] = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        scores["cos"] = (unit(evidence.stage1) @ bank.model_centroids.T).max(axis=1)
    if evidence.stage2 is not None:
        embedding = unit(evidence.stage2)
        own = bank.model_of_sku[None, :] == evidence.model[:, None]
        scores["centroid"] = np.where(own, embedding @ bank.sku_centroids.T, -np.inf).max(axis=1)
        if not neighbours:  # serving a method without kNN skips its sort
            return scores
        mine = bank.neighbour_model[None, :] == evidence.model[:, None]
        near = -np.sort(-np.where(mine, embedding @ bank.neighbours.T, -np.inf), axis=1)
        near = near[:, :MAX_K]
        count = np.minimum(mine.sum(axis=1), MAX_K)
        for k in range(1, MAX_K + 1):
            column = np.clip(np.minimum(k, count) - 1, 0, None)
            kth = near[np.arange(len(near)), column] if near.shape[1] else np.zeros(len(count))
            scores[f"knn{k}"] = np.where(count > 0, kth, -np.inf)
    return scores


def z_stats(scores: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """[mean, std] of each combined score (std floored by STD_FLOOR); {} without them."""
    if any(name not in scores or len(scores[name]) == 0 for name in COMBINED):
        return {}
    stats = {}
    for name in COMBINED:
        mean, std = float(np.mean(scores[name])), float(np.std(scores[name]))
        stats[name] = [mean, max(std, STD_FLOOR, STD_FLOOR * abs(mean))]
    return stats


def with_combination(
    scores: dict[str, np.ndarray], stats: dict[str, list[float]]
) -> dict[str, np.ndarray]:
    """`scores` and "energy+cos": the mean of energy and cosine, each z-scored by `stats`."""
    if all(name in scores and name in stats for name in COMBINED):
        z = [(scores[name] - stats[name][0]) / stats[name][1] for name in COMBINED]
        return {**scores, "energy+cos": (z[0] + z[1]) / 2}
    return scores


def decision_codes(
    scores: dict[str, np.ndarray], method: Method, thresholds: dict[str, float | None]
) -> np.ndarray:
    """0 "sku", 1 "model", 2 "unknown" per answer. A threshold of None never flags, whether or
    not its score could be computed."""
    count = len(scores["joint"])
    unknown = _below(scores.get(method.unknown), thresholds.get("unknown"), count)
    model = _below(scores.get(method.model), thresholds.get("model"), count)
    return np.where(unknown, 2, np.where(model, 1, 0))


def _below(score: np.ndarray | None, threshold: float | None, count: int) -> np.ndarray:
    if threshold is None:
        return np.zeros(count, dtype=bool)
    if score is None:
        # a calibration this version's runners cannot apply: recalibrate it
        raise ConfigError("the open-world calibration has a threshold whose score is missing")
    return np.asarray(score < threshold)
