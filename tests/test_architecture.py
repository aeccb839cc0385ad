"""The cascade's networks: stage 2's conditioning on the model stage 1 proposes."""

from __future__ import annotations

import keras
import numpy as np

from training.architecture import FILM_BLOCKS, build_stage2

MEMBERSHIP = [[0, 1], [2, 3, 4]]  # model 0 has SKUs 0-1, model 1 has SKUs 2-4


def _stage2() -> keras.Model:
    keras.utils.set_random_seed(3)
    return build_stage2(MEMBERSHIP, 5, input_size=32, width=1 / 16, batch_norm=False)


def _predict(model: keras.Model, image: np.ndarray, model_index: int) -> np.ndarray:
    inputs = {"image": image[None], "model": np.array([model_index], "int32")}
    return model.predict(inputs, verbose=0)[0]


def test_stage_two_gives_p_sku_given_model_only_over_that_models_skus() -> None:
    stage2 = _stage2()
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype("uint8")
    for model_index, skus in enumerate(MEMBERSHIP):
        probs = _predict(stage2, image, model_index)
        others = [s for s in range(5) if s not in skus]
        assert abs(probs[skus].sum() - 1) < 1e-6
        assert np.all(probs[others] == 0)


def test_stage_two_trunk_is_modulated_per_model() -> None:
    stage2 = _stage2()
    for block in FILM_BLOCKS:  # starts as the identity: scale 1, shift 0
        assert np.all(stage2.get_layer(f"block{block}_film_scale").get_weights()[0] == 1)
        assert np.all(stage2.get_layer(f"block{block}_film_shift").get_weights()[0] == 0)
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3)).astype("uint8")
    before = [_predict(stage2, image, m) for m in (0, 1)]
    # Change model 1's modulation of the last block: only model 1's answers may move.
    layer = stage2.get_layer(f"block{FILM_BLOCKS[-1]}_film_shift")
    shift = layer.get_weights()[0]
    shift[1] = np.random.default_rng(2).normal(0, 5, shift.shape[1])
    layer.set_weights([shift])
    after = [_predict(stage2, image, m) for m in (0, 1)]
    assert np.array_equal(before[0], after[0])
    assert not np.allclose(before[1], after[1], atol=1e-4)
