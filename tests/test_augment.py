"""Training augmentation's photo degradations: each image its own, within their bounds."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from training import augment  # noqa: E402


def _batch(n: int = 24, size: int = 32) -> np.ndarray:
    """Mid-tone photos with a sharp edge: no clipping under the strongest exposure."""
    rng = np.random.default_rng(0)
    images = np.full((n, size, size, 3), 90.0, np.float32)
    images[:, :, size // 2 :, :] = rng.uniform(40, 140, (n, 1, 1, 3))
    return images


def test_degrade_keeps_shape_and_range_and_changes_each_image_its_own_way() -> None:
    images = _batch()
    out = augment.degrade(tf.constant(images), seed=3).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    changed = np.abs(out - images).mean(axis=(1, 2, 3)) > 0.5
    assert 0 < changed.sum() < len(images)  # a share stays clean (DEGRADE_RATE)
    assert np.array_equal(out[~changed], images[~changed])
    out, images = out[changed], images[changed]
    gains = out.mean(axis=(1, 2)) / images.mean(axis=(1, 2))  # (n, 3): exposure x cast
    exposure = gains.mean(axis=1)
    assert len(np.unique(np.round(exposure, 3))) == len(images)
    assert (
        (exposure > 1 - augment.EXPOSURE - 0.03) & (exposure < 1 + augment.EXPOSURE + 0.03)
    ).all()
    cast = gains / exposure[:, None]  # white balance alone, blur and JPEG aside
    assert (np.abs(cast - 1) < augment.COLOUR_CAST + 0.03).all()
