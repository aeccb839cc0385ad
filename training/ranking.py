"""How the cascade turns stage-1 and stage-2 probabilities into a prediction (pure NumPy).

Stage 1 proposes one model when it is sure, or its top few when it is not; stage 2 scores the
SKUs within each proposed model; a (model, SKU) pair scores p(model) x p(SKU | model).

The answer is stage 1's top model and its best SKU (`combine="model"`, the default); the other
proposed models' pairs follow it as candidates, by score. Taking the best-scoring pair instead
(`combine="joint"`) lets a runner-up model win, but p(SKU | model) sums to 1 within every model,
so a model with one SKU scores its whole p(model) while one with twelve splits it: the joint
answer drifts to models with few SKUs, and model top-1 falls below stage 1's own (measured in
docs/training.md, "Uneven catalogs"). The best SKU of the top model never does: its model is
the argmax of p(model), which is the joint's marginal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import InvalidArgument
from training.labels import Labels

COMBINE_RULES = ("model", "joint")


@dataclass(frozen=True)
class RankingPolicy:
    """When to look beyond stage 1's top model, and how many candidates to report."""

    sure: float = 0.9  # stage-1 confidence above which only the top model is considered
    top_models: int = 3  # at most this many models when unsure
    min_model_prob: float = 0.01  # models below this are never considered
    candidates: int = 5
    combine: str = "model"  # model: stage 1's top model first; joint: the best-scoring pair

    def __post_init__(self) -> None:
        if not 0 < self.sure <= 1:
            raise InvalidArgument("sure must be in (0, 1]")
        if self.combine not in COMBINE_RULES:
            raise InvalidArgument(f"combine must be one of {', '.join(COMBINE_RULES)}")
        if self.top_models < 1 or self.candidates < 1:
            raise InvalidArgument("top_models and candidates must be at least 1")


def propose_models(p_model: np.ndarray, policy: RankingPolicy) -> list[list[int]]:
    """For each image, the model indices stage 2 should consider, best first."""
    proposals = []
    for probs in p_model:
        order = np.argsort(-probs, kind="stable")
        chosen = [int(order[0])]
        if probs[order[0]] < policy.sure:
            for m in order[1 : policy.top_models]:
                if probs[m] >= policy.min_model_prob:
                    chosen.append(int(m))
        proposals.append(chosen)
    return proposals


def rank(
    p_model: np.ndarray,
    proposals: list[list[int]],
    p_sku_given_model: np.ndarray,
    labels: Labels,
    policy: RankingPolicy,
) -> list[dict[str, Any]]:
    """Combine the stages into one result per image (a job's `result`, README.md#http-api).

    `p_sku_given_model` has one row per (image, proposed model) pair, in `proposals` order."""
    results = []
    row = 0
    for i, models in enumerate(proposals):
        scored: list[tuple[float, int, int]] = []
        for m in models:
            joint = p_model[i, m] * p_sku_given_model[row]
            scored += [(float(joint[s]), m, s) for s in labels.membership[m]]
            row += 1
        scored.sort(key=lambda item: -item[0])  # stable: ties keep stage 1's order
        if policy.combine == "model":
            # the top model's best pair is the answer; every other pair follows it by score
            scored.sort(key=lambda item: item[1] != models[0])
            scored[1:] = sorted(scored[1:], key=lambda item: -item[0])
        best_score, best_model, best_sku = scored[0]
        results.append(
            {
                "model": {
                    "label": labels.models[best_model],
                    "confidence": round(float(p_model[i, best_model]), 6),
                },
                "sku": {"label": labels.skus[best_sku], "confidence": round(best_score, 6)},
                "candidates": [
                    {
                        "model": labels.models[m],
                        "sku": labels.skus[s],
                        "confidence": round(score, 6),
                    }
                    for score, m, s in scored[: policy.candidates]
                ],
            }
        )
    return results
