"""Importing TensorFlow without its C++ start-up chatter on the user's terminal."""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Import keras, and tensorflow where it is Keras' backend (KERAS_BACKEND; the default),
    with file descriptor 2 sent to /dev/null meanwhile.

    TensorFlow's native logging writes straight to fd 2 before any Python or environment
    setting can silence it; Python-level errors raised after the import still show normally.
    Under JAX or PyTorch, serving and `skuai bench` never need TensorFlow (training does)."""
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
