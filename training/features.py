"""Inputs of the column fits of an incremental version (training.head_fit): a stage's
intermediate outputs for photos, and augmented copies of photos by the training pipeline's own
augmentation."""

from __future__ import annotations

from typing import Any

import numpy as np

FEATURE_BATCH = 64


def stage_features(
    extractor: Any, images: np.ndarray, model_index: int | None = None
) -> np.ndarray:
    """`extractor`'s outputs for `images` (float 0-255), batch by batch in inference mode; with
    `model_index`, stage 2's model input is that model for every image. (Direct calls: Keras'
    predict traces a new function for every extractor, which cost more than the features.)"""
    out = []
    for start in range(0, len(images), FEATURE_BATCH):
        batch = images[start : start + FEATURE_BATCH].astype(np.float32)
        inputs: Any = batch
        if model_index is not None:
            inputs = {"image": batch, "model": np.full(len(batch), model_index, np.int32)}
        out.append(np.asarray(extractor(inputs, training=False)))
    return np.concatenate(out)


def augmented_copies(images: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """`copies` augmented versions of each image, by the training pipeline's augmentation
    (flips, rotation, zoom, shifts, contrast, brightness, occlusion) as float 0-255."""
    import tensorflow as tf

    from training.augment import augment_batch

    if not len(images) or not copies:
        return np.zeros((0, *images.shape[1:]), np.float32)
    augment = augment_batch(seed, degrade_photos=False)
    batches = []
    for _ in range(copies):
        for start in range(0, len(images), FEATURE_BATCH):
            chunk = tf.convert_to_tensor(images[start : start + FEATURE_BATCH])
            batches.append(np.asarray(augment(chunk)[0]))
    return np.concatenate(batches).astype(np.float32)
