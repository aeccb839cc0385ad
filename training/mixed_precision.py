"""Mixed-precision training: the Keras policy a run trains in, and float32 copies of the trained
models, so that a saved version loads and serves in float32 on any machine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.cpu import cpu_has_bf16
from shared.errors import InvalidArgument
from training.config import PRECISIONS

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def resolve(precision: str) -> str:
    """`auto`: fp16 on a GPU (tensor cores), bf16 on a CPU with BF16 units (AVX-512 BF16 or
    AMX, where oneDNN runs convolutions in bfloat16), fp32 elsewhere. Others name themselves."""
    if precision not in PRECISIONS:
        raise InvalidArgument(f"unknown training precision {precision!r}")
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


@contextmanager
def policy(precision: str) -> Iterator[None]:
    """Models built inside compute in `precision` (weights stay float32); the global Keras policy
    is restored afterwards."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model: Any, build: Callable[[], Any]) -> Any:
    """`model` rebuilt by its builder in float32 with the trained weights (itself if it already
    computes in float32)."""
    if model.dtype_policy.compute_dtype == "float32":
        return model
    with policy("fp32"):
        copy = build()
    copy.set_weights(model.get_weights())
    return copy
