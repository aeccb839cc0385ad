"""Photo-like variation applied on the fly to training batches: flips, rotation, crop/scale,
shifts, contrast, brightness, occlusion (a random patch in front of the shoe), and the
degradations of a phone photo (exposure, slight blur, white balance, JPEG compression), which
training.pipeline applies to stage 1's batches only, and only with TrainConfig.degrade_photos."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

OCCLUSION_RATE = 0.3  # share of training images that get an occluding patch
OCCLUSION_SIZE = (0.08, 0.2)  # patch half-sides, as fractions of the image side
ROTATION = 15 / 360  # of a full turn, either way
CONTRAST = 0.35
EXPOSURE = 0.35  # multiplicative brightness within 1 +- this
BLUR_RATE, BLUR_SIGMA = 0.5, 0.02  # share blurred; the strongest blur's sigma, share of the side
# White balance: per-channel gains within 1 +- this. The degradations reach stage 1 only (its
# grayscale input barely notices a cast): on stage 2 they cost colourways (docs/training.md,
# "Robustness").
COLOUR_CAST = 0.05
JPEG_RATE, JPEG_QUALITY = 0.5, (15, 75)  # share re-encoded as JPEG; its quality range
DEGRADE_RATE = 0.5  # share of images degraded at all: the rest stay clean photos


def augmenter(seed: int, strength: float = 1.0) -> keras.Sequential:
    """Geometric and photometric variation (Keras' random preprocessing layers); `strength`
    scales every range (1: the defaults below; `skuai tune` searches it)."""
    k = strength
    return keras.Sequential(
        [
            _layer("RandomFlip", "horizontal", seed=seed),
            _layer("RandomRotation", ROTATION * k, fill_mode="nearest", seed=seed + 1),
            _layer("RandomZoom", (-0.1 * k, 0.15 * k), fill_mode="nearest", seed=seed + 2),
            _layer("RandomTranslation", 0.06 * k, 0.06 * k, fill_mode="nearest", seed=seed + 3),
            _layer("RandomContrast", CONTRAST * k, seed=seed + 4),
            _layer("RandomBrightness", 0.15 * k, value_range=(0, 255), seed=seed + 5),
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


def degrade(images: tf.Tensor, *, seed: int | None = None) -> tf.Tensor:
    """A phone's degradations on a batch of (N, H, W, 3) floats in 0-255, each image its own:
    a slight blur on some, an exposure gain, a white-balance cast, JPEG artefacts on some; about
    1 - `DEGRADE_RATE` of them are left alone."""
    original = images
    n = tf.shape(images)[0]
    draws = tf.random.uniform([n, 9], seed=seed)  # one op: see occlude

    def column(i: int) -> tf.Tensor:  # (n, 1, 1, 1)
        return draws[:, i, None, None, None]

    blurred = _gaussian_blur(images, BLUR_SIGMA * float(images.shape[1] or 64))
    strength = column(0) * tf.cast(column(1) < BLUR_RATE, images.dtype)
    images = images + strength * (blurred - images)
    images = images * (1 + EXPOSURE * (2 * column(2) - 1))
    gains = 1 + COLOUR_CAST * (2 * draws[:, None, None, 3:6] - 1)
    images = tf.clip_by_value(images * gains, 0.0, 255.0)
    low, high = JPEG_QUALITY
    quality = tf.cast(low + (high - low) * draws[:, 6], tf.int32)
    compressed = tf.map_fn(
        lambda args: _jpeg(args[0], args[1]),
        (images, quality),
        fn_output_signature=tf.float32,
    )
    images = tf.where(column(7) < JPEG_RATE, compressed, images)
    return tf.where(column(8) < DEGRADE_RATE, images, original)


def _jpeg(image: tf.Tensor, quality: tf.Tensor) -> tf.Tensor:
    pixels = tf.cast(tf.round(image), tf.uint8)
    return tf.cast(tf.image.adjust_jpeg_quality(pixels, quality), tf.float32)


def _gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Each channel blurred by a Gaussian of `sigma` pixels (edges padded by reflection)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    rows = tf.constant(np.tile(weights[:, None, None, None], (1, 1, 3, 1)))
    cols = tf.constant(np.tile(weights[None, :, None, None], (1, 1, 3, 1)))
    one = [1, 1, 1, 1]
    blurred = tf.nn.depthwise_conv2d(padded, rows, one, "VALID")
    return tf.nn.depthwise_conv2d(blurred, cols, one, "VALID")


def augment_batch(
    seed: int,
    occlusion: float = OCCLUSION_RATE,
    *,
    degrade_photos: bool = True,
    strength: float = 1.0,
) -> Any:
    """A tf.data map function: (inputs, *rest) -> augmented float images, the rest unchanged."""
    layers = augmenter(seed, strength)

    def image(x: tf.Tensor) -> tf.Tensor:
        x = layers(tf.cast(x, tf.float32), training=True)
        x = occlude(x, rate=occlusion, seed=seed + 6) if occlusion > 0 else x
        return degrade(x, seed=seed + 7) if degrade_photos else x

    def apply(x: Any, *rest: Any) -> Any:
        if isinstance(x, dict):
            return {**x, "image": image(x["image"])}, *rest
        return image(x), *rest

    return apply
