"""The GPU worker path on this process's Keras backend (KERAS_BACKEND), without TensorFlow: the
devices the worker configures, the 224-px benchmark cascade (random weights) loaded by the
worker's ModelCache, and its throughput on decoded images in fp32 and fp16.

    python deploy/gpu/worker_path.py OUT.json [--images N] [--size PX]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.images import decode
from shared.settings import Settings
from skuai.bench.harness import bench_images
from skuai.bench.models import full_width_random
from training.backends import backend
from training.precision import allow_for_timing
from worker.devices import configure_devices
from worker.model_cache import ModelCache

BATCH = 32


def main() -> None:
    """Measure, print and write the numbers as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    settings = Settings.from_env()
    files = bench_images(settings, args.images, args.size, seed=7)
    registry = full_width_random(settings, args.size, files[0].parent.parent.parent)
    version = registry.require_active()
    pixels = np.stack([decode(p.read_bytes(), size=args.size, max_pixels=10**8) for p in files])
    result: dict[str, Any] = {"backend": backend(), "gpus": configure_devices()}
    result["images"] = len(files)
    for precision in ("fp32", "fp16"):
        if precision != "fp32":  # random weights: no accuracy to check
            allow_for_timing(registry.path(version), precision)
        began = time.perf_counter()
        cascade = ModelCache(registry, None, precision=precision).get(version)  # type: ignore[arg-type]
        loaded = time.perf_counter() - began
        result[precision] = {"load_and_warm_up_s": round(loaded, 2), **_throughput(cascade, pixels)}
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def _throughput(cascade: Any, pixels: np.ndarray) -> dict[str, Any]:
    """Images per second of the full cascade at BATCH images a call (the first call, timed
    apart, compiles on JAX)."""
    size = min(BATCH, len(pixels))
    batches = [pixels[i : i + size] for i in range(0, len(pixels) - size + 1, size)]
    began = time.perf_counter()
    cascade.predict(batches[0])
    first = time.perf_counter() - began
    began = time.perf_counter()
    for batch in batches:
        cascade.predict(batch)
    seconds = time.perf_counter() - began
    return {
        "first_call_s": round(first, 2),
        "batch": size,
        "images_per_second": round(len(batches) * size / seconds, 1),
        "default_device": _default_device(),
    }


def _default_device() -> str:
    """Where Keras puts the weights and runs the passes on this backend."""
    name = backend()
    if name == "jax":
        import jax

        return str(jax.devices()[0])
    if name == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


if __name__ == "__main__":
    main()
