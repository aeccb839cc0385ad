"""What the open-world scores of a batch of cascade answers are computed from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.labels import Labels


@dataclass(frozen=True)
class Evidence:
    """The answers of a batch and the stages' outputs behind them."""

    p_model: np.ndarray  # (N, models) stage 1's probabilities
    model: np.ndarray  # (N,) the answered model's index
    sku: np.ndarray  # (N,) the answered SKU's index
    confidence: np.ndarray  # (N,) the answer's p(model) x p(SKU | model)
    stage1: np.ndarray | None  # (N, D1) stage 1's fc embedding
    stage2: np.ndarray | None  # (N, D2) stage 2's sku_hidden embedding, with the answered model

    @classmethod
    def of(
        cls,
        results: list[dict[str, Any]],
        p_model: np.ndarray,
        embedding1: np.ndarray | None,
        proposals: list[list[int]],
        embedding2: np.ndarray | None,
        labels: Labels,
    ) -> Evidence:
        """From the cascade's answers; `embedding2` has one row per (image, proposed model)."""
        model = np.array([labels.model_index[r["model"]["label"]] for r in results], dtype=int)
        stage2 = None
        if embedding2 is not None:
            starts = np.cumsum([0] + [len(p) for p in proposals[:-1]])
            rows = [s + p.index(int(m)) for s, p, m in zip(starts, proposals, model, strict=True)]
            stage2 = embedding2[rows]
        return cls(
            p_model=p_model,
            model=model,
            sku=np.array([labels.sku_index[r["sku"]["label"]] for r in results], dtype=int),
            confidence=np.array([r["sku"]["confidence"] for r in results], dtype=np.float64),
            stage1=embedding1,
            stage2=stage2,
        )

    @classmethod
    def joined(cls, parts: Sequence[Evidence]) -> Evidence:
        """Several batches' evidence as one."""

        def stack(name: str) -> Any:
            arrays = [getattr(p, name) for p in parts]
            return None if any(a is None for a in arrays) else np.concatenate(arrays)

        return cls(**{name: stack(name) for name in cls.__dataclass_fields__})
