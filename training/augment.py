"""Photo-like variation applied on the fly to training batches: flips, rotation, crop/scale,
shifts, contrast, brightness, and occlusion (a random patch in front of the shoe)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

OCCLUSION_RATE = 0.3  # share of training images that get an occluding patch
OCCLUSION_SIZE = (0.08, 0.2)  # patch half-sides, as fractions of the image side


def augmenter(seed: int) -> keras.Sequential:
    """Geometric and photometric variation (Keras' random preprocessing layers)."""
    return keras.Sequential(
        [
            _layer("RandomFlip", "horizontal", seed=seed),
            _layer("RandomRotation", 0.03, fill_mode="nearest", seed=seed + 1),
            _layer("RandomZoom", (-0.1, 0.15), fill_mode="nearest", seed=seed + 2),
            _layer("RandomTranslation", 0.06, 0.06, fill_mode="nearest", seed=seed + 3),
            _layer("RandomContrast", 0.2, seed=seed + 4),
            _layer("RandomBrightness", 0.15, value_range=(0, 255), seed=seed + 5),
        ],
        name="augment",
    )


def _layer(name: str, *args: Any, **kwargs: Any) -> keras.layers.Layer:
    return getattr(keras.layers, name)(*args, **kwargs)


def occlude(
    images: tf.Tensor,
    *,
    rate: float = OCCLUSION_RATE,
    size: tuple[float, float] = OCCLUSION_SIZE,
    seed: int | None = None,
) -> tf.Tensor:
    """Paint one solid rectangle of a random colour on about `rate` of a batch's images.

    Images are (N, H, W, 3) floats in 0-255; each patch has its own centre, half-sides in `size`
    (fractions of the side) and colour, so a model cannot rely on any single part of the shoe."""
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    # All draws from one op: ops sharing an op seed repeat each other's numbers inside a graph
    # (as in Dataset.map), which would tie the patch's x to its y and its size to its place.
    draws = tf.random.uniform([n, 8], seed=seed)

    def column(i: int) -> tf.Tensor:  # (n, 1, 1), to broadcast over rows and columns
        return draws[:, i, None, None]

    centre_y, centre_x = column(0), column(1)
    half_h = size[0] + (size[1] - size[0]) * column(2)
    half_w = size[0] + (size[1] - size[0]) * column(3)
    ys = (tf.cast(tf.range(height), tf.float32)[None, :, None] + 0.5) / tf.cast(height, tf.float32)
    xs = (tf.cast(tf.range(width), tf.float32)[None, None, :] + 0.5) / tf.cast(width, tf.float32)
    inside = (tf.abs(ys - centre_y) < half_h) & (tf.abs(xs - centre_x) < half_w)
    chosen = column(4) < rate
    mask = tf.cast((inside & chosen)[..., None], images.dtype)
    colour = tf.cast(255.0 * draws[:, None, None, 5:8], images.dtype)
    return images * (1 - mask) + colour * mask


def augment_batch(seed: int, occlusion: float = OCCLUSION_RATE) -> Any:
    """A tf.data map function: (inputs, *rest) -> augmented float images, the rest unchanged."""
    layers = augmenter(seed)

    def image(x: tf.Tensor) -> tf.Tensor:
        x = layers(tf.cast(x, tf.float32), training=True)
        return occlude(x, rate=occlusion, seed=seed + 6) if occlusion > 0 else x

    def apply(x: Any, *rest: Any) -> Any:
        if isinstance(x, dict):
            return {**x, "image": image(x["image"])}, *rest
        return image(x), *rest

    return apply
