"""Streaming training data with tf.data: file paths in, decoded (and augmented) batches out.

Files are decoded in parallel by the serving decoder (Pillow, through `tf.numpy_function`), so a
model trains on exactly the pixels it will see in production. Decoded images are kept in memory
when they fit under `CACHE_BYTES`; otherwise every epoch streams from disk. Batches carry sample
weights: the class weight of each image's target (class imbalance), and 0 for a file that could
not be read, which the `ImageSource` remembers so training can count it. (Weighting instead of
filtering keeps the number of batches known, so progress and epochs stay exact.)"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from shared.images import decode
from training.augment import augment_batch
from training.config import TrainConfig
from training.dataset import Sample, Split
from training.labels import Labels
from training.loading import MAX_TRAINING_PIXELS

AUTOTUNE = tf.data.AUTOTUNE
CACHE_BYTES = 2 << 30  # decoded images of one split kept in memory up to this size
Target = Literal["model", "sku", "model+sku"]


class ImageSource:
    """Decodes dataset files to (size, size, 3) uint8 and remembers those that cannot be read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._unreadable: set[str] = set()
        self._lock = threading.Lock()

    @property
    def unreadable(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._unreadable)

    def decode(self, path: bytes) -> tuple[np.ndarray, bool]:
        name = path.decode()
        try:
            with open(name, "rb") as file:
                data = file.read()
            return decode(data, size=self.size, max_pixels=MAX_TRAINING_PIXELS), True
        except Exception:  # whatever a file does wrong, training skips it
            with self._lock:
                self._unreadable.add(name)
            return np.zeros((self.size, self.size, 3), np.uint8), False


def fit_streams(
    parts: Split, labels: Labels, source: ImageSource, *, target: Target, config: TrainConfig
) -> tuple[tf.data.Dataset, tf.data.Dataset | None]:
    """The train stream (class-weighted as `config.balance` says) and the val stream (None
    without a val split) that one stage is fitted on."""
    from training.fit import balance_weights  # fit imports Keras' training machinery

    targets = np.array(
        [
            labels.model_index[s.model] if target == "model" else labels.sku_index[s.sku]
            for s in parts.train
        ]
    )
    classes = len(labels.models) if target == "model" else len(labels.skus)
    weights = balance_weights(targets, classes, config.balance)

    def of(samples: Sequence[Sample], training: bool) -> tf.data.Dataset:
        return stream(
            samples,
            labels,
            source,
            target=target,
            config=config,
            training=training,
            class_weights=weights if training else None,
        )

    return of(parts.train, True), of(parts.val, False) if parts.val else None


def stream(
    samples: Sequence[Sample],
    labels: Labels,
    source: ImageSource,
    *,
    target: Target,
    config: TrainConfig,
    training: bool,
    class_weights: dict[int, float] | None = None,
) -> tf.data.Dataset:
    """Batches of (inputs, target, weight) for one stage: `model` (stage 1), `model+sku` (stage 2:
    image and model in, SKU out) or `sku` (the flat single-stage classifier). Shuffled and
    augmented when training."""
    paths = [str(s.path) for s in samples]
    models = np.array([labels.model_index[s.model] for s in samples], dtype=np.int32)
    skus = np.array([labels.sku_index[s.sku] for s in samples], dtype=np.int32)
    data = tf.data.Dataset.from_tensor_slices((paths, models, skus))
    cached = len(paths) * source.size * source.size * 3 <= CACHE_BYTES
    shuffle = min(len(paths), 50_000)
    # in parallel, yet in order (and so a seeded run is repeatable); see _parallel_calls
    ordered = _parallel_calls(augmented=training and config.augment)
    if training and not cached:  # streaming: shuffle the (cheap) paths before decoding
        data = data.shuffle(shuffle, seed=config.seed, reshuffle_each_iteration=True)
    data = data.map(_decoder(source), **ordered)
    if cached:
        data = data.cache()
        if training:
            data = data.shuffle(shuffle, seed=config.seed, reshuffle_each_iteration=True)
    data = data.map(_shape(target, class_weights), **ordered)
    data = data.batch(config.batch_size)
    if training and config.augment:
        # One batch at a time: the random layers draw from seeded generators that hold state, so
        # batch i gets the i-th draw only if batches are augmented in order (op determinism would
        # serialise it anyway). Each call is a whole batch; prefetching still overlaps it.
        # Photo degradations for stage 1 only: they cost stage 2 colourways (docs/training.md)
        degrade = config.degrade_photos and target == "model"
        data = data.map(
            augment_batch(
                config.seed,
                config.occlusion,
                degrade_photos=degrade,
                strength=config.augment_strength,
            )
        )
    return data.prefetch(AUTOTUNE)


def _parallel_calls(*, augmented: bool) -> dict[str, Any]:
    """Map arguments: parallel and in order; serial for an augmented stream under op
    determinism, which runs every map of a pipeline holding random state serially anyway (and
    logs an error line on the terminal when it rewrites a parallel one)."""
    from tensorflow.python.framework import config as tf_config

    if augmented and tf_config.is_op_determinism_enabled():
        return {}
    return {"num_parallel_calls": AUTOTUNE, "deterministic": True}


def _decoder(source: ImageSource) -> Any:
    size = source.size

    def load(path: tf.Tensor, model: tf.Tensor, sku: tf.Tensor) -> Any:
        # stateful=False: the same path always gives the same pixels (remembering unreadable
        # files is bookkeeping, not output), which lets tf.data optimise the map.
        image, ok = tf.numpy_function(source.decode, [path], (tf.uint8, tf.bool), stateful=False)
        image.set_shape((size, size, 3))
        ok.set_shape(())
        return image, ok, model, sku

    return load


def _shape(target: Target, class_weights: dict[int, float] | None) -> Any:
    table = None
    if class_weights:
        table = tf.constant([class_weights[i] for i in range(len(class_weights))], tf.float32)

    def pick(image: tf.Tensor, ok: tf.Tensor, model: tf.Tensor, sku: tf.Tensor) -> Any:
        label = model if target == "model" else sku
        weight = tf.cast(ok, tf.float32)
        if table is not None:
            weight = weight * tf.gather(table, label)
        inputs = image if target != "model+sku" else {"image": image, "model": model}
        return inputs, label, weight

    return pick
