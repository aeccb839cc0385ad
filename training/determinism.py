"""Repeatable training: the same seed, data and machine give the same weights and metrics.

Every random draw of a run comes from its seed: weight initialisation and dropout (Keras' global
seed generator), shuffles and augmentation (seeded in training.pipeline), the split
(training.dataset). TensorFlow's op determinism makes the ops themselves repeatable, and makes
tf.data run functions that hold random state (augmentation) in a fixed order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's, TensorFlow's and Keras' global generators from `seed`."""
    import keras

    keras.utils.set_random_seed(seed)


@contextmanager
def deterministic_ops() -> Iterator[None]:
    """TensorFlow ops run deterministically inside; the process's previous setting comes back
    after, so a caller that trains in-process (tests, notebooks) keeps its own."""
    # tf.config.experimental exports only the enabling half; the module behind it has all three.
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    tf_config.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
