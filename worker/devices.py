"""Devices for inference processes: one pool process per GPU, pinned to it, with memory growth
so processes sharing a host do not each grab a whole GPU; the CPU when there is no GPU."""

from __future__ import annotations

import logging
import os

from shared.errors import InvalidArgument

log = logging.getLogger(__name__)
GPUS_ENV = "SKUAI_WORKER_GPUS"  # set by `skuai worker --gpus 0,1`: one pool process per GPU


def parse_gpus(raw: str) -> list[str]:
    """`--gpus 0,1,3`: device indices as CUDA names them."""
    gpus = [part.strip() for part in raw.split(",") if part.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise InvalidArgument(f"--gpus must be comma-separated GPU indices, e.g. 0,1 (got {raw!r})")
    return gpus


def pin_process(index: int) -> str | None:
    """Before TensorFlow loads: make pool process `index` see only its own GPU."""
    raw = os.environ.get(GPUS_ENV)
    if not raw:
        return None
    gpus = parse_gpus(raw)
    device = gpus[index % len(gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    return device


def configure_devices() -> list[str]:
    """The GPUs the Keras backend of this process sees (empty: the CPU), each set to take
    memory as it needs it rather than all at once; TensorFlow is imported only when it is the
    backend (KERAS_BACKEND)."""
    # Read by JAX when it first touches a device: several processes may then share a GPU.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from training.backends import backend

    name = backend()
    if name == "tensorflow":
        return configure_tensorflow()
    if name == "jax":
        import jax

        gpus = [str(d) for d in jax.devices() if d.platform == "gpu"]
    elif name == "torch":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        gpus = [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(count)]
    else:
        gpus = []
    log.info("inference on %s with %s", ", ".join(gpus) if gpus else "the CPU", name)
    return gpus


def configure_tensorflow() -> list[str]:
    """Memory growth on every visible GPU; returns their names (empty: running on the CPU)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised: growth cannot change any more
            log.warning("memory growth not set on %s: %s", gpu.name, exc)
    log.info("inference on %s", ", ".join(g.name for g in gpus) if gpus else "the CPU")
    return [g.name for g in gpus]
