"""The accuracy check that lets a version run in int8: quantize with training images, evaluate
float32 and int8 side by side on the version's test split, allow int8 only if SKU top-1 drops
by at most MAX_DROP_POINTS. The verdict is kept in the version folder (`precision.json`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from training.dataset import scan, split
from training.registry import Registry

MAX_DROP_POINTS = 0.5
CALIBRATION_IMAGES = 64
VERDICT_FILE = "precision.json"


def int8_allowed(folder: Path) -> bool:
    """True when this version passed the int8 accuracy check."""
    try:
        verdict = json.loads((folder / VERDICT_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(verdict.get("int8", {}).get("allowed"))


def check_int8(registry: Registry, version: str) -> dict[str, Any]:
    """Quantize `version`, compare with float32 on its test split, record and return the verdict."""
    from training.cascade import Cascade
    from training.evaluate import evaluate
    from training.loading import load_arrays
    from training.quantize import quantize_version

    folder = registry.path(version)
    config = json.loads((folder / "config.json").read_text())
    data_dir = Path(config["data_dir"]) if config.get("data_dir") else None
    if data_dir is None or not data_dir.is_dir():
        raise ConfigError(
            f"the dataset of {version} ({data_dir or 'unknown'}) is not here: the int8 accuracy "
            "check needs its test split"
        )
    labels, samples = scan(data_dir)
    parts = split(samples, seed=int(config["seed"]))
    size = int(config["input_size"])
    calibration = load_arrays(
        parts.train[:: max(1, len(parts.train) // CALIBRATION_IMAGES)], labels, size=size
    )
    test = load_arrays(parts.test, labels, size=size)
    began = time.perf_counter()
    quantize_version(
        folder, calibration.images[:CALIBRATION_IMAGES], calibration.models[:CALIBRATION_IMAGES]
    )
    quantize_seconds = time.perf_counter() - began
    fp32 = evaluate(Cascade.load(folder, version=version), test)
    int8 = evaluate(Cascade.load(folder, version=version, precision="int8"), test)
    verdict = _verdict(fp32, int8, quantize_seconds)
    (folder / VERDICT_FILE).write_text(json.dumps({"int8": verdict}, indent=2) + "\n")
    return verdict


def _verdict(fp32: dict[str, Any], int8: dict[str, Any], seconds: float) -> dict[str, Any]:
    top1 = {"fp32": fp32["end_to_end"]["sku_top1"], "int8": int8["end_to_end"]["sku_top1"]}
    drop = (top1["fp32"] - top1["int8"]) * 100
    return {
        "allowed": bool(drop <= MAX_DROP_POINTS),
        "sku_top1_fp32": top1["fp32"],
        "sku_top1_int8": top1["int8"],
        "drop_points": round(float(drop), 3),
        "max_drop_points": MAX_DROP_POINTS,
        "test_images": int(fp32["test_images"]),
        "quantize_seconds": round(seconds, 1),
    }


def describe(verdict: dict[str, Any]) -> str:
    """One line for people."""
    return (
        f"int8 SKU top-1 {verdict['sku_top1_int8']:.2%} vs fp32 {verdict['sku_top1_fp32']:.2%}"
        f" ({verdict['drop_points']:+.2f} points lost, at most {MAX_DROP_POINTS} allowed) on "
        f"{verdict['test_images']} test images"
    )
