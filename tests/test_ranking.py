"""The cascade's combination of p(model) and p(SKU | model)."""

from __future__ import annotations

import numpy as np
import pytest

from training.labels import Labels
from training.ranking import RankingPolicy, propose_models, rank

LABELS = Labels(
    models=("runner", "court"),
    skus_by_model={
        "runner": ("runner-red", "runner-blue"),
        "court": ("court-red", "court-blue", "court-green"),
    },
)


def test_a_sure_stage_one_proposes_one_model() -> None:
    assert propose_models(np.array([[0.95, 0.05]]), RankingPolicy()) == [[0]]


def test_an_unsure_stage_one_proposes_its_top_models() -> None:
    proposals = propose_models(np.array([[0.55, 0.45], [0.3, 0.7]]), RankingPolicy(sure=0.9))
    assert proposals == [[0, 1], [1, 0]]


def test_a_runner_up_model_can_win_on_a_strong_stage_two_match() -> None:
    p_model = np.array([[0.55, 0.45]])
    proposals = [[0, 1]]
    p_sku = np.array(
        [
            [0.5, 0.5, 0.0, 0.0, 0.0],  # under "runner": nothing stands out
            [0.0, 0.0, 0.98, 0.01, 0.01],  # under "court": clearly court-red
        ]
    )
    [result] = rank(p_model, proposals, p_sku, LABELS, RankingPolicy())
    assert result["sku"]["label"] == "court-red"
    assert result["sku"]["confidence"] == pytest.approx(0.45 * 0.98)
    assert result["model"] == {"label": "court", "confidence": pytest.approx(0.45)}
    assert [c["sku"] for c in result["candidates"]] == [
        "court-red",
        "runner-red",
        "runner-blue",
        "court-blue",
        "court-green",
    ]
    assert all(
        c["model"] == LABELS.models[LABELS.model_of_sku[LABELS.sku_index[c["sku"]]]]
        for c in result["candidates"]
    )


def test_candidates_are_capped() -> None:
    [result] = rank(
        np.array([[1.0, 0.0]]),
        [[1]],
        np.array([[0, 0, 0.5, 0.3, 0.2]]),
        LABELS,
        RankingPolicy(candidates=2),
    )
    assert [c["sku"] for c in result["candidates"]] == ["court-red", "court-blue"]


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        RankingPolicy(sure=0)
    with pytest.raises(ValueError):
        RankingPolicy(top_models=0)
