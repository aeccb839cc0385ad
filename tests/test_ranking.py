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


def test_joint_ranking_lets_a_runner_up_model_win_on_a_strong_stage_two_match() -> None:
    p_model = np.array([[0.55, 0.45]])
    proposals = [[0, 1]]
    p_sku = np.array(
        [
            [0.5, 0.5, 0.0, 0.0, 0.0],  # under "runner": nothing stands out
            [0.0, 0.0, 0.98, 0.01, 0.01],  # under "court": clearly court-red
        ]
    )
    [result] = rank(p_model, proposals, p_sku, LABELS, RankingPolicy(combine="joint"))
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


def test_by_default_the_answer_is_stage_ones_model_and_its_best_sku() -> None:
    p_model = np.array([[0.55, 0.45]])
    p_sku = np.array([[0.5, 0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.98, 0.01, 0.01]])
    [result] = rank(p_model, [[0, 1]], p_sku, LABELS, RankingPolicy())
    assert result["model"] == {"label": "runner", "confidence": pytest.approx(0.55)}
    assert result["sku"] == {"label": "runner-red", "confidence": pytest.approx(0.55 * 0.5)}
    # the runner-up's strong match is still the first candidate after the answer
    assert [c["sku"] for c in result["candidates"]] == [
        "runner-red",
        "court-red",
        "runner-blue",
        "court-blue",
        "court-green",
    ]


ONE_AND_MANY = Labels(
    models=("solo", "many"),
    skus_by_model={"solo": ("solo-a",), "many": tuple(f"many-{i}" for i in range(12))},
)


def _random_stages(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 unsure between the models; stage 2 spread over each model's SKUs."""
    p_model = rng.dirichlet([1.0, 1.0], size=n)
    p_sku = np.zeros((n, 2, 13))
    p_sku[:, 0, 0] = 1.0  # a model with one SKU is always sure of it
    p_sku[:, 1, 1:] = rng.dirichlet(np.ones(12), size=n)
    return p_model, p_sku


def _ranked(p_model: np.ndarray, p_sku: np.ndarray, policy: RankingPolicy) -> list[dict]:
    proposals = propose_models(p_model, policy)
    rows = np.array([p_sku[i, m] for i, models in enumerate(proposals) for m in models])
    return rank(p_model, proposals, rows, ONE_AND_MANY, policy)


def test_the_reported_model_is_never_worse_than_stage_one() -> None:
    """Whatever the images' true models, the reported one is stage 1's top model, so end-to-end
    model top-1 equals stage 1's; the joint rule drifts to the model with one SKU."""
    rng = np.random.default_rng(0)
    p_model, p_sku = _random_stages(rng, 400)
    stage1 = p_model.argmax(axis=1)
    truth = (rng.random(400) < p_model[:, 1]).astype(int)  # true models drawn as stage 1 says
    for combine in ("model", "joint"):
        results = _ranked(p_model, p_sku, RankingPolicy(combine=combine))
        reported = np.array([ONE_AND_MANY.model_index[r["model"]["label"]] for r in results])
        if combine == "model":
            assert np.array_equal(reported, stage1)
        else:
            assert np.mean(reported == 0) > np.mean(stage1 == 0) + 0.15
            assert np.mean(reported == truth) < np.mean(stage1 == truth)
        for r in results:  # the SKU always belongs to the reported model
            sku = ONE_AND_MANY.sku_index[r["sku"]["label"]]
            assert ONE_AND_MANY.models[ONE_AND_MANY.model_of_sku[sku]] == r["model"]["label"]


def test_the_answer_is_the_best_sku_of_the_top_model() -> None:
    rng = np.random.default_rng(1)
    p_model, p_sku = _random_stages(rng, 200)
    for i, r in enumerate(_ranked(p_model, p_sku, RankingPolicy())):
        top = int(p_model[i].argmax())
        best = int(np.argmax(np.where(p_sku[i, top] > 0, p_sku[i, top], -1)))
        assert r["sku"]["label"] == ONE_AND_MANY.skus[best]
        assert r["sku"]["confidence"] == pytest.approx(
            p_model[i, top] * p_sku[i, top, best], abs=1e-6
        )
        scores = [c["confidence"] for c in r["candidates"][1:]]
        assert scores == sorted(scores, reverse=True)


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        RankingPolicy(sure=0)
    with pytest.raises(ValueError):
        RankingPolicy(top_models=0)
    with pytest.raises(ValueError, match="combine must be one of model, joint"):
        RankingPolicy(combine="sum")
