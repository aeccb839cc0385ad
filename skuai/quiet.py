"""Importing TensorFlow without its C++ start-up chatter on the user's terminal."""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Import tensorflow and keras with file descriptor 2 sent to /dev/null meanwhile.

    TensorFlow's native logging writes straight to fd 2 before any Python or environment
    setting can silence it; Python-level errors raised after the import still show normally."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
